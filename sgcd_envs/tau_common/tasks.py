"""τ tasks (upstream ``tasks.json`` + ``split_tasks.json``): splits, categories, reference
actions and communicate_info, the same for every domain."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgcd_common import did_you_mean

from ..core import ToolCall
from . import data

SPLITS = ("train", "test", "all")
"""``train`` and ``test`` from upstream ``split_tasks.json``; ``all`` = upstream ``base``."""

Category = Literal["action", "no_write"]


@dataclass(frozen=True)
class Task:
    """One τ task.

    ``category`` is ``"action"`` when the reference ``actions`` contain a write tool, else
    ``"no_write"``; ``split`` is ``"train"`` or ``"test"``; ``instructions`` is upstream's
    ``user_scenario.instructions`` (reason_for_call, known_info, unknown_info, task_instructions);
    ``write_actions`` counts the write calls among ``actions``.
    """

    id: str
    split: str
    category: Category
    actions: tuple[ToolCall, ...]
    communicate_info: tuple[str, ...]
    instructions: dict[str, Any] = field(repr=False)
    nl_assertions: tuple[str, ...] = field(default=(), repr=False)
    purpose: str | None = field(default=None, repr=False)
    write_actions: int = field(default=0, repr=False)


def check_split(split: str) -> str:
    """``split`` normalised (``base`` → ``all``); a clear error for anything else."""
    if split == "base":
        return "all"
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Choose one of: {', '.join(SPLITS)}.{did_you_mean(str(split), SPLITS)}")
    return split


def reference_actions(raw: dict[str, Any]) -> tuple[ToolCall, ...]:
    """The task's ``evaluation_criteria.actions`` as calls (ids: upstream's ``action_id``)."""
    actions = raw["evaluation_criteria"].get("actions") or []
    return tuple(ToolCall(name=a["name"], arguments=dict(a["arguments"]), id=a.get("action_id") or f"{raw['id']}_{i}")
                 for i, a in enumerate(actions))


def parse_task(raw: dict[str, Any], split: str, write_tools: Collection[str]) -> Task:
    """One upstream task record as a :class:`Task`."""
    crit = raw["evaluation_criteria"]
    actions = reference_actions(raw)
    writes = sum(a.name in write_tools for a in actions)
    return Task(
        id=str(raw["id"]),
        split=split,
        category="action" if writes else "no_write",
        actions=actions,
        communicate_info=tuple(crit.get("communicate_info") or ()),
        instructions=dict(raw["user_scenario"]["instructions"]),
        nl_assertions=tuple(crit.get("nl_assertions") or ()),
        purpose=(raw.get("description") or {}).get("purpose"),
        write_actions=writes,
    )


@functools.lru_cache(maxsize=16)
def all_tasks(path: Path, write_tools: frozenset[str]) -> tuple[Task, ...]:
    """Every task of the folder, in upstream order (parsed once per folder)."""
    splits = data.raw_splits(path)
    split_of = {tid: name for name in ("train", "test") for tid in splits[name]}
    return tuple(parse_task(raw, split_of[str(raw["id"])], write_tools) for raw in data.raw_tasks(path))


def of_split(tasks: Sequence[Task], split: str) -> list[Task]:
    """The tasks of ``split`` (``all``: every task), in order."""
    split = check_split(split)
    return [t for t in tasks if split == "all" or t.split == split]


def find_task(tasks: Sequence[Task], task_id: str, label: str) -> Task:
    """The task with id ``task_id``; ``KeyError`` naming the id range otherwise."""
    by_id = {t.id: t for t in tasks}
    if str(task_id) not in by_id:
        raise KeyError(f"Unknown {label} task id {task_id!r}; ids are '0'..'{len(by_id) - 1}'.")
    return by_id[str(task_id)]
