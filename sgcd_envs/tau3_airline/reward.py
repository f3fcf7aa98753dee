"""τ³-airline verifier: the shared τ verifier (:mod:`sgcd_envs.tau_common.reward`, whose doc
gives upstream's formula) on the airline domain; every airline task has
``reward_basis = ["DB", "COMMUNICATE"]``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..core import ToolCall
from ..core.verifier import EpisodeScore, communicate_match
from ..tau_common import reward as _shared
from .domain import AIRLINE
from .state import AirlineState
from .tasks import Task


def apply_calls(state: AirlineState, calls: Iterable[ToolCall]) -> tuple[int, int]:
    """Run ``calls`` in order on ``state`` as the env does; return (#errors, #schema-valid write calls)."""
    return _shared.apply_calls(AIRLINE, state, calls)


def gold_state(task: Task, data_dir: str | os.PathLike[str] | None = None) -> tuple[AirlineState, dict]:
    """The state after the task's reference actions (computed once per task and cached)."""
    return _shared.gold_state(AIRLINE, task, data_dir)  # type: ignore[return-value]


def score_state(task: Task, state: AirlineState, agent_messages: Iterable[str | Mapping[str, Any]],
                write_calls: int, termination: str, data_dir: str | os.PathLike[str] | None = None) -> EpisodeScore:
    """Score a finished episode's live state (what the env calls; no replay)."""
    return _shared.score_state(AIRLINE, task, state, agent_messages, write_calls, termination, data_dir)


def evaluate_episode(task: Task, tool_calls: Iterable[ToolCall | Mapping[str, Any]],
                     agent_messages: Iterable[str | Mapping[str, Any]], termination: str = "user_stop",
                     data_dir: str | os.PathLike[str] | None = None) -> EpisodeScore:
    """Score a finished episode from its tool calls and agent messages, as upstream does (replay
    on a fresh DB, compare with the gold DB, check ``communicate_info``)."""
    return _shared.evaluate_episode(AIRLINE, task, tool_calls, agent_messages, termination, data_dir)


__all__ = ["EpisodeScore", "apply_calls", "communicate_match", "evaluate_episode", "gold_state", "score_state"]
