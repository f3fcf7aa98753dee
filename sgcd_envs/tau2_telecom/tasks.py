"""τ²-telecom tasks: upstream's 2,285 (``tasks.json``) and its five splits (``split_tasks.json``):
``small`` 20, ``train`` 74, ``test`` 40, ``base`` 114 (= train ∪ test; ``all`` is an alias, as for
the other τ domains) and ``full`` 2,285. A task can be in several splits (``full`` holds all).

Unlike airline and retail, every telecom task has an ``initial_state`` (``initialization_actions``
run on the agent's or the user's side before the episode; no ``initialization_data`` and no
``message_history`` in the pinned data), reference actions with a ``requestor`` (``assistant`` or
``user``), ``env_assertions`` and a ``reward_basis`` of ``["ENV_ASSERTION"]`` (2,253 tasks) or
``["ENV_ASSERTION", "ACTION"]`` (32); none has ``communicate_info``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgcd_common import did_you_mean

from ..core import ToolCall
from . import data
from .tools import WRITE_TOOLS

SPLITS = ("small", "train", "test", "base", "full")
Requestor = Literal["assistant", "user"]


@dataclass(frozen=True)
class Action:
    """A reference action: a tool ``call`` made by ``requestor``; ``compare_args`` names the
    arguments an episode's call must match (None: every argument the episode's call has)."""

    requestor: Requestor
    call: ToolCall
    compare_args: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EnvCall:
    """A function run on one side's environment (``env_type``); for an assertion, ``assert_value``
    is what it must return."""

    env_type: Requestor
    func_name: str
    arguments: dict[str, Any]
    assert_value: bool = True


@dataclass(frozen=True)
class Task:
    """One telecom task; ``category`` is ``"action"`` when the reference actions contain an agent
    write tool, else ``"no_write"``; ``write_actions`` counts those."""

    id: str
    splits: frozenset[str]
    category: Literal["action", "no_write"]
    actions: tuple[Action, ...]
    initialization: tuple[EnvCall, ...]
    env_assertions: tuple[EnvCall, ...]
    reward_basis: tuple[str, ...]
    instructions: dict[str, Any] = field(repr=False)
    ticket: str | None = field(default=None, repr=False)
    purpose: str | None = field(default=None, repr=False)
    write_actions: int = field(default=0, repr=False)

    @property
    def assistant_actions(self) -> tuple[ToolCall, ...]:
        return tuple(a.call for a in self.actions if a.requestor == "assistant")


def check_split(split: str) -> str:
    """``split`` normalised (``all`` → ``base``); a clear error for anything else."""
    if split == "all":
        return "base"
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Choose one of: {', '.join(SPLITS)}.{did_you_mean(str(split), SPLITS)}")
    return split


def _env_call(raw: dict[str, Any]) -> EnvCall:
    return EnvCall(env_type=raw["env_type"], func_name=raw["func_name"], arguments=dict(raw.get("arguments") or {}),
                   assert_value=bool(raw.get("assert_value", True)))


def parse_task(raw: dict[str, Any], splits: frozenset[str]) -> Task:
    """One upstream task record as a :class:`Task`."""
    crit = raw["evaluation_criteria"]
    init = raw.get("initial_state") or {}
    if init.get("initialization_data") is not None or init.get("message_history") is not None:
        raise ValueError(f"task {raw['id']}: initialization_data / message_history are not supported")
    actions = tuple(
        Action(requestor=a.get("requestor", "assistant"),
               call=ToolCall(name=a["name"], arguments=dict(a["arguments"]), id=a.get("action_id") or f"{raw['id']}_{i}"),
               compare_args=None if a.get("compare_args") is None else tuple(a["compare_args"]))
        for i, a in enumerate(crit.get("actions") or ()))
    writes = sum(a.requestor == "assistant" and a.call.name in WRITE_TOOLS for a in actions)
    return Task(
        id=str(raw["id"]), splits=splits, category="action" if writes else "no_write", actions=actions,
        initialization=tuple(_env_call(c) for c in init.get("initialization_actions") or ()),
        env_assertions=tuple(_env_call(c) for c in crit.get("env_assertions") or ()),
        reward_basis=tuple(crit.get("reward_basis") or ("DB", "COMMUNICATE")),
        instructions=dict(raw["user_scenario"]["instructions"]), ticket=raw.get("ticket"),
        purpose=(raw.get("description") or {}).get("purpose"), write_actions=writes)


@functools.lru_cache(maxsize=4)
def all_tasks(path: Path) -> tuple[Task, ...]:
    """Every task of a verified folder, in upstream order (parsed once per folder)."""
    splits = data.raw_splits(path)
    member: dict[str, set[str]] = {}
    for name in SPLITS:
        for tid in splits[name]:
            member.setdefault(tid, set()).add(name)
    return tuple(parse_task(raw, frozenset(member.get(str(raw["id"]), ()))) for raw in data.raw_tasks(path))


def of_split(tasks: Sequence[Task], split: str) -> list[Task]:
    """The tasks of ``split``, in upstream order."""
    split = check_split(split)
    return [t for t in tasks if split in t.splits]


def load_tasks(split: str = "base", data_dir: str | os.PathLike[str] | None = None) -> list[Task]:
    """Tasks of ``split`` (``small`` 20, ``train`` 74, ``test`` 40, ``base``/``all`` 114, ``full`` 2,285)."""
    return of_split(all_tasks(data.data_dir(data_dir)), split)


def get_task(task_id: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    """The task with this id (of any split); ``KeyError`` otherwise."""
    for task in all_tasks(data.data_dir(data_dir)):
        if task.id == task_id:
            return task
    raise KeyError(f"Unknown τ² telecom task id {task_id!r}")


__all__ = ["SPLITS", "Action", "EnvCall", "Task", "all_tasks", "check_split", "get_task", "load_tasks", "of_split"]
