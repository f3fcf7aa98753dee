"""Reference turns of a τ task: what an agent that solves it writes, turn by turn.

One Hermes tool call per reference action (upstream's ``evaluation_criteria.actions``, in order),
then one closing message with every ``communicate_info`` string and ``###STOP###``. Replayed
through the env this reproduces the gold DB and the communicated facts, so the episode scores 1.
"""

from __future__ import annotations

from ..core import AGENT_STOP_TOKEN
from .tasks import Task


def task_turns(task: Task) -> list[str]:
    """The assistant texts that solve ``task``."""
    return [*(action.to_hermes() for action in task.actions), " ".join([*task.communicate_info, AGENT_STOP_TOKEN])]
