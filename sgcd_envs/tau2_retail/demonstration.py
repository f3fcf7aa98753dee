"""Reference turns of τ²-retail tasks (:func:`sgcd_envs.tau_common.demonstration.task_turns`:
one Hermes call per reference action, then the communicate_info and ``###STOP###``); they score 1
on all 114 tasks (``tests/envs/test_tau2_retail.py``). For warm starts (``sgcd-bench sft``)."""

from __future__ import annotations

from ..tau_common.demonstration import task_turns
from .tasks import load_tasks


def reference_turns(task_id: str, split: str = "train") -> list[str]:
    """The assistant texts that solve τ² retail task ``task_id`` of ``split``."""
    task = next((t for t in load_tasks(split) if t.id == str(task_id)), None)
    if task is None:
        raise ValueError(f"τ² retail task {task_id!r} is not in split {split!r}")
    return task_turns(task)
