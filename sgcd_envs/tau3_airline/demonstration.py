"""Reference turns of τ³-airline tasks: what an agent that solves a task writes, turn by turn.

One Hermes tool call per reference action (upstream's ``evaluation_criteria.actions``, in order),
then one closing message with every ``communicate_info`` string and ``###STOP###``. Replayed
through the env this reproduces the gold DB and the communicated facts, so the episode scores 1
(``tests/envs/test_tau3_airline.py``). Used by the warm start (``sgcd-bench sft``) and the verl
CI contrast stand-in.
"""

from __future__ import annotations

from .tasks import load_tasks


def reference_turns(task_id: str, split: str = "train") -> list[str]:
    """The assistant texts that solve τ³ task ``task_id`` of ``split``."""
    task = next((t for t in load_tasks(split) if t.id == str(task_id)), None)
    if task is None:
        raise ValueError(f"τ³ task {task_id!r} is not in split {split!r}")
    return [*(action.to_hermes() for action in task.actions), " ".join([*task.communicate_info, "###STOP###"])]
