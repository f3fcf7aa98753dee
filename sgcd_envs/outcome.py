"""The typed end of an episode: what the trainer, the result store and the tables read.

:func:`episode_outcome` is the one place an env's final ``info`` is read; everything after it
(rollout episodes, stored episode rows, the collapse guard) reads the :class:`EpisodeOutcome`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

TASK_CATEGORIES = ("action", "no_write")
"""Task categories the leaderboards report: an ``action`` task's reference actions contain a write
tool, a ``no_write`` task's do not. Other categories an env reports (e.g. AppWorld's difficulty)
are not kept."""

CUT = "cut"
"""Termination of an episode that ended without the env saying why (e.g. stopped from outside)."""


@dataclass(frozen=True)
class EpisodeOutcome:
    """How one episode ended.

    Attributes:
        reward: the verifier reward in [0, 1] (0 on an abnormal end or before the end).
        termination: why it ended (``agent_stop``, ``user_stop``, ``max_turns``, ``task_completed``, ...).
        write_calls: the agent's write-tool calls (attempted: schema-valid, whether or not the tool refused).
        write_calls_succeeded: those the tool carried out (what changes state; the collapse guard reads these).
        category: one of :data:`TASK_CATEGORIES`, or None when the env has no such split.
        db_match / communicate_match: the verifier's parts where the env has them (τ³), else None.
    """

    reward: float = 0.0
    termination: str = CUT
    write_calls: int = 0
    write_calls_succeeded: int = 0
    category: str | None = None
    db_match: bool | None = None
    communicate_match: bool | None = None


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def episode_outcome(info: Mapping[str, Any], *, reward: float | None = None,
                    categories: Collection[str] = TASK_CATEGORIES) -> EpisodeOutcome:
    """The outcome recorded in an env's final ``info`` (``reward`` overrides ``info["reward"]``);
    a category outside ``categories`` becomes None."""
    category = info.get("category")
    return EpisodeOutcome(
        reward=float(info.get("reward", 0.0) if reward is None else reward),
        termination=str(info.get("termination", CUT)),
        write_calls=int(info.get("write_calls", 0)),
        write_calls_succeeded=int(info.get("write_calls_succeeded", 0)),
        category=category if category in categories else None,
        db_match=_optional_bool(info.get("db_match")),
        communicate_match=_optional_bool(info.get("communicate_match")),
    )


__all__ = ["CUT", "TASK_CATEGORIES", "EpisodeOutcome", "episode_outcome"]
