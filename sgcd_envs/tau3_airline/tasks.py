"""τ³-airline tasks: splits, categories, reference actions and communicate_info."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgcd_common import did_you_mean

from ..core import ToolCall
from . import data
from .tools import WRITE_TOOLS

SPLITS = ("train", "test", "all")
"""``train`` (30) and ``test`` (20) from upstream ``split_tasks.json``; ``all`` = upstream ``base`` (50)."""

Category = Literal["action", "no_write"]


@dataclass(frozen=True)
class Task:
    """One τ³ airline task.

    ``category`` is ``"action"`` when the reference ``actions`` contain a write tool, else
    ``"no_write"``; ``split`` is ``"train"`` or ``"test"``; ``instructions`` is upstream's
    ``user_scenario.instructions`` (reason_for_call, known_info, unknown_info, task_instructions).
    """

    id: str
    split: str
    category: Category
    actions: tuple[ToolCall, ...]
    communicate_info: tuple[str, ...]
    instructions: dict[str, Any] = field(repr=False)
    nl_assertions: tuple[str, ...] = field(default=(), repr=False)
    purpose: str | None = field(default=None, repr=False)

    @property
    def write_actions(self) -> int:
        return sum(a.name in WRITE_TOOLS for a in self.actions)


def check_split(split: str) -> str:
    """``split`` normalised (``base`` → ``all``); a clear error for anything else."""
    if split == "base":
        return "all"
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Choose one of: {', '.join(SPLITS)}.{did_you_mean(str(split), SPLITS)}")
    return split


@functools.lru_cache(maxsize=8)
def _all_tasks(path: Path) -> tuple[Task, ...]:
    splits = data.raw_splits(path)
    split_of = {tid: name for name in ("train", "test") for tid in splits[name]}
    tasks = []
    for raw in data.raw_tasks(path):
        crit = raw["evaluation_criteria"]
        actions = tuple(
            ToolCall(name=a["name"], arguments=dict(a["arguments"]), id=a.get("action_id") or f"{raw['id']}_{i}")
            for i, a in enumerate(crit.get("actions") or [])
        )
        tasks.append(Task(
            id=str(raw["id"]),
            split=split_of[str(raw["id"])],
            category="action" if any(a.name in WRITE_TOOLS for a in actions) else "no_write",
            actions=actions,
            communicate_info=tuple(crit.get("communicate_info") or ()),
            instructions=dict(raw["user_scenario"]["instructions"]),
            nl_assertions=tuple(crit.get("nl_assertions") or ()),
            purpose=(raw.get("description") or {}).get("purpose"),
        ))
    return tuple(tasks)


def load_tasks(split: str = "all", data_dir: str | os.PathLike[str] | None = None) -> list[Task]:
    """Tasks of ``split`` (``train`` 30, ``test`` 20, ``all`` 50) in upstream order."""
    split = check_split(split)
    tasks = _all_tasks(data.data_dir(data_dir))
    return [t for t in tasks if split == "all" or t.split == split]


def get_task(task_id: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    tasks = {t.id: t for t in load_tasks("all", data_dir)}
    if str(task_id) not in tasks:
        raise KeyError(f"Unknown τ³ airline task id {task_id!r}; ids are '0'..'{len(tasks) - 1}'.")
    return tasks[str(task_id)]
