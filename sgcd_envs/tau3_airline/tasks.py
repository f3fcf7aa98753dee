"""τ³-airline tasks: splits, categories, reference actions and communicate_info (parsed by
:mod:`sgcd_envs.tau_common.tasks`)."""

from __future__ import annotations

import os

from ..tau_common.tasks import SPLITS, Category, Task, check_split, find_task, of_split
from .domain import AIRLINE

def load_tasks(split: str = "all", data_dir: str | os.PathLike[str] | None = None) -> list[Task]:
    """Tasks of ``split`` (``train`` 30, ``test`` 20, ``all`` 50) in upstream order."""
    split = check_split(split)
    return of_split(AIRLINE.tasks(AIRLINE.data_dir(data_dir)), split)


def get_task(task_id: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    return find_task(load_tasks("all", data_dir), task_id, AIRLINE.label)


__all__ = ["SPLITS", "Category", "Task", "check_split", "get_task", "load_tasks"]
