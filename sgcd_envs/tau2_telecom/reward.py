"""The τ²-telecom verifier, as upstream (tau2 ``evaluator/evaluator.py`` with ``ALL``,
``evaluator_env.py``, ``evaluator_action.py``):

    reward = Π over the task's reward_basis of
        DB:            1[agent DB and user DB of the episode == those of the gold replay]
        ENV_ASSERTION: Π_a 1[f_a(episode state) == a.assert_value]
        ACTION:        Π_g 1[∃ episode tool call c (either side): g matches c]
        COMMUNICATE:   as airline / retail (no telecom task has communicate_info)

and 0 when the episode did not end normally (``user_stop`` / ``agent_stop``). Every pinned task's
basis is ``ENV_ASSERTION`` (2,253) or ``ENV_ASSERTION`` × ``ACTION`` (32), so the DB check is a
diagnostic (``db_match``) as upstream reports it.

Follows upstream: the episode state is the task's initial state (``initialization_actions``,
each followed by the sync; see :mod:`.environment`) with the episode's calls of both sides, each
successful one followed by the sync; scoring the live state is the same as upstream's replay of
the trajectory because calls are atomic and the sync is idempotent. The assertions run in order
on that state, each followed by a sync (on a throw-away child here, so scoring changes nothing).
A reference action matches a call with its name and equal values of ``compare_args`` (None: of
every argument the call has; ``[]``: the name alone); the requestor is not compared. The gold
state replays the reference actions of both requestors on the initial state without syncing
between them, as upstream's gold environment does; a failing reference action is skipped.

Where it cannot: an assertion function that raises counts as unmet (upstream's evaluator lets
the exception escape); one that returns a non-bool raises ``TypeError`` (upstream: ValueError).
NL assertions are diagnostics upstream and are not scored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..caching import once_per_key
from ..core import ToolCall
from ..core.verifier import NORMAL_TERMINATIONS
from .data import data_dir as _data_dir
from .environment import apply_calls, initial_state, run_env_function
from .state import TelecomState, telecom_states_equal
from .tasks import Action, Requestor, Task, all_tasks
from .tools import TOOL_ERRORS


@dataclass(frozen=True)
class TelecomScore:
    """A finished episode's score; ``env_assertions`` and ``actions`` hold each check's outcome,
    ``breakdown`` each reward-basis term."""

    reward: float
    db_match: bool
    env_assertions: tuple[bool, ...]
    actions: tuple[bool, ...]
    breakdown: dict[str, float] = field(default_factory=dict)
    write_calls: int = 0
    category: str = "no_write"
    termination: str = "user_stop"

    def as_info(self) -> dict[str, Any]:
        return {"reward": self.reward, "db_match": self.db_match, "env_assertions": list(self.env_assertions),
                "action_matches": list(self.actions), "reward_breakdown": dict(self.breakdown),
                "write_calls": self.write_calls, "category": self.category, "termination": self.termination}


def action_matches(action: Action, call: ToolCall) -> bool:
    """Upstream ``Action.compare_with_tool_call``: same name, and equal values of
    ``compare_args`` (None: of every argument ``call`` has)."""
    if action.call.name != call.name:
        return False
    keys = set(call.arguments) if action.compare_args is None else set(action.compare_args)
    if not keys:
        return True
    return ({k: v for k, v in call.arguments.items() if k in keys}
            == {k: v for k, v in action.call.arguments.items() if k in keys})


def action_checks(task: Task, calls: Sequence[ToolCall]) -> tuple[bool, ...]:
    """For each reference action, whether some episode call (of either side) matches it."""
    return tuple(any(action_matches(a, c) for c in calls) for a in task.actions)


def env_assertion_checks(task: Task, state: TelecomState) -> tuple[bool, ...]:
    """Each environment assertion's outcome on ``state`` (run in order on a child of it, which
    is then dropped, so ``state`` is unchanged)."""
    probe = state.child()
    out = []
    for assertion in task.env_assertions:
        try:
            value = run_env_function(probe, assertion)
        except TOOL_ERRORS:
            out.append(False)
            continue
        if not isinstance(value, bool):
            raise TypeError(f"{assertion.func_name} returned {type(value).__name__}, not bool")
        out.append(value == assertion.assert_value)
    return tuple(out)


def reference_calls(task: Task) -> list[tuple[Requestor, ToolCall]]:
    """The task's reference actions as ``(requestor, call)`` pairs, in order."""
    return [(a.requestor, a.call) for a in task.actions]


@once_per_key  # one gold state per (folder, task), also when envs score from several threads at once
def _gold(path: Path, task_id: str) -> TelecomState:
    task = next(t for t in all_tasks(path) if t.id == task_id)
    state = initial_state(task, path)
    failed, _ = apply_calls(state, reference_calls(task), sync_after=False)
    if failed:
        raise RuntimeError(f"{failed} reference action(s) of τ² telecom task {task.id} failed; the data or the "
                           "tools are not the pinned version")
    return state


def gold_state(task: Task, data_dir: str | os.PathLike[str] | None = None) -> TelecomState:
    """The state after the task's reference actions, replayed as upstream's gold environment
    (cached per task; never mutate it)."""
    return _gold(_data_dir(data_dir), task.id)


def score_state(task: Task, state: TelecomState, calls: Sequence[ToolCall], write_calls: int, termination: str,
                data_dir: str | os.PathLike[str] | None = None) -> TelecomScore:
    """Score a finished episode from its live state and its tool calls of both sides."""
    db_ok = telecom_states_equal(state, gold_state(task, data_dir))
    asserted = env_assertion_checks(task, state)
    matched = action_checks(task, calls)
    terms = {"DB": float(db_ok), "ENV_ASSERTION": float(all(asserted)), "ACTION": float(all(matched)),
             "COMMUNICATE": 1.0}
    breakdown = {basis: terms[basis] for basis in task.reward_basis if basis in terms}
    if set(task.reward_basis) - set(terms):
        raise ValueError(f"task {task.id}: unsupported reward basis {sorted(set(task.reward_basis) - set(terms))}")
    reward = 1.0
    for value in breakdown.values():
        reward *= value
    if termination not in NORMAL_TERMINATIONS:
        reward = 0.0
    return TelecomScore(reward, db_ok, asserted, matched, breakdown, write_calls, task.category, termination)


def as_pairs(tool_calls: Iterable[tuple[Requestor, ToolCall] | Mapping[str, Any]]) -> list[tuple[Requestor, ToolCall]]:
    """``(requestor, ToolCall)`` pairs or ``{"name", "arguments"[, "requestor", "id"]}`` dicts as pairs
    (a dict's requestor defaults to ``assistant``)."""
    out: list[tuple[Requestor, ToolCall]] = []
    for i, c in enumerate(tool_calls):
        if isinstance(c, tuple):
            out.append(c)
        else:
            out.append((c.get("requestor", "assistant"),
                        ToolCall(c["name"], dict(c.get("arguments") or {}), str(c.get("id", i)))))
    return out


def evaluate_episode(task: Task, tool_calls: Iterable[tuple[Requestor, ToolCall] | Mapping[str, Any]],
                     termination: str = "user_stop",
                     data_dir: str | os.PathLike[str] | None = None) -> TelecomScore:
    """Score an episode from its tool calls of both sides, as upstream does: replay them on the
    task's initial state, then check the reward basis."""
    path = _data_dir(data_dir)
    pairs = as_pairs(tool_calls)
    state = initial_state(task, path)
    _, writes = apply_calls(state, pairs)
    return score_state(task, state, [c for _, c in pairs], writes, termination, data_dir)


__all__ = ["TelecomScore", "action_checks", "action_matches", "as_pairs", "env_assertion_checks", "evaluate_episode",
           "gold_state", "reference_calls", "score_state"]
