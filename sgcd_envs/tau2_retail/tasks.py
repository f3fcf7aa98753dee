"""τ²-retail tasks: upstream's 114 (``train`` 74, ``test`` 40 from ``split_tasks.json``; ``all`` =
upstream ``base``), parsed by :mod:`sgcd_envs.tau_common.tasks`. No retail task has
``initial_state``, env assertions or a ``reward_basis`` of its own (upstream's default
``["DB", "COMMUNICATE"]`` applies); two have no reference actions (their gold is the unchanged DB)."""

from __future__ import annotations

import os

from ..tau_common.tasks import SPLITS, Task, find_task, of_split
from .domain import RETAIL


def load_tasks(split: str = "all", data_dir: str | os.PathLike[str] | None = None) -> list[Task]:
    """Tasks of ``split`` (``train`` 74, ``test`` 40, ``all`` 114) in upstream order."""
    return of_split(RETAIL.tasks(RETAIL.data_dir(data_dir)), split)


def get_task(task_id: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    return find_task(load_tasks("all", data_dir), task_id, RETAIL.label)


__all__ = ["SPLITS", "Task", "get_task", "load_tasks"]
