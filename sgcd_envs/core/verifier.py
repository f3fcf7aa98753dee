"""The τ-style verifier parts every tool-use env here shares: the communicate check over the
agent's texts and the :class:`EpisodeScore` an env's ``_score`` returns.

    reward = 1[final state == state after replaying the reference actions]
           × 1[∀ s ∈ communicate_info: ∃ assistant text m: s.lower() ∈ m.lower().replace(",", "")]

on a normal end (:data:`~.env.NORMAL_TERMINATIONS`), else 0 (tau2 ``evaluator_env.py`` and
``evaluator_communicate.py``). How a state is replayed and compared is each env's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .env import NORMAL_TERMINATIONS

__all__ = ["EpisodeScore", "agent_texts", "communicate_match"]


@dataclass(frozen=True)
class EpisodeScore:
    """Verifier result; ``reward = db_match × communicate_match`` on a normal end, else 0."""

    reward: float
    db_match: bool
    communicate_match: bool
    write_calls: int
    category: str
    termination: str

    @classmethod
    def of(cls, db_match: bool, communicate_match: bool, write_calls: int, category: str,
           termination: str) -> EpisodeScore:
        """The score with its reward computed from the parts and the termination."""
        reward = float(db_match and communicate_match) if termination in NORMAL_TERMINATIONS else 0.0
        return cls(reward, db_match, communicate_match, write_calls, category, termination)

    def as_info(self) -> dict[str, Any]:
        return {"reward": self.reward, "db_match": self.db_match, "communicate_match": self.communicate_match,
                "write_calls": self.write_calls, "category": self.category, "termination": self.termination}


def communicate_match(communicate_info: Sequence[str], agent_texts: Iterable[str]) -> bool:
    """``∀ s: ∃ m: s.lower() in m.lower().replace(",", "")`` (upstream; empty list → True)."""
    texts = [t.lower().replace(",", "") for t in agent_texts if t]
    return all(any(s.lower() in t for t in texts) for s in communicate_info)


def agent_texts(agent_messages: Iterable[str | Mapping[str, Any]]) -> list[str]:
    """The agent's texts: strings as they are, and the ``content`` of assistant message dicts
    (a text sent beside a tool call counts); other roles are left out."""
    out = []
    for m in agent_messages:
        if isinstance(m, str):
            out.append(m)
        elif m.get("role", "assistant") == "assistant" and isinstance(m.get("content"), str):
            out.append(m["content"])
    return out
