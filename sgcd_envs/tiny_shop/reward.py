"""Tiny-shop verifier, τ's semantics (:mod:`sgcd_envs.core.verifier`):

    reward = 1[final orders == orders after replaying the task's reference actions on its world]
           × 1[every communicate_info string is in an agent message (case-insensitive)]

and 0 when the episode did not end normally. The world has a handful of records, so the gold
state is replayed at every scoring (microseconds) and compared record by record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..core import EpisodeScore, ToolExecutionError, agent_texts, communicate_match
from .tasks import Task
from .world import Orders, run_call


def gold_state(task: Task) -> Orders:
    """The orders after the task's reference actions (each of which must succeed)."""
    orders = {o.id: o for o in task.world}
    for call in task.actions:
        try:
            run_call(orders, call)
        except ToolExecutionError as err:
            raise RuntimeError(f"reference action {call.name} of task {task.id} was refused ({err}): "
                               "the task generator is wrong") from err
    return orders


def score_state(task: Task, orders: Orders, agent_messages: Iterable[str | Mapping[str, Any]],
                write_calls: int, termination: str) -> EpisodeScore:
    """Score a finished episode's final orders and the agent's messages."""
    db_ok = orders == gold_state(task)
    comm_ok = communicate_match(task.communicate_info, agent_texts(agent_messages))
    return EpisodeScore.of(db_ok, comm_ok, write_calls, task.category, termination)
