"""Reference turns of τ³-airline tasks (:func:`sgcd_envs.tau_common.demonstration.task_turns`:
one Hermes call per reference action, then the communicate_info and ``###STOP###``); they score 1
(``tests/envs/test_tau3_airline.py``). Used by the warm start (``sgcd-bench sft``) and the verl
CI contrast stand-in.
"""

from __future__ import annotations

from ..tau_common.demonstration import task_turns
from .tasks import load_tasks


def reference_turns(task_id: str, split: str = "train") -> list[str]:
    """The assistant texts that solve τ³ task ``task_id`` of ``split``."""
    task = next((t for t in load_tasks(split) if t.id == str(task_id)), None)
    if task is None:
        raise ValueError(f"τ³ task {task_id!r} is not in split {split!r}")
    return task_turns(task)
