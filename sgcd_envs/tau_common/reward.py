"""The τ verifier, as upstream (tau2 ``evaluator/evaluator.py``, ``evaluator_env.py``,
``evaluator_communicate.py``; every airline and retail task has the default
``reward_basis = ["DB", "COMMUNICATE"]``):

    reward = 1[hash(final DB) == hash(DB after replaying the reference actions on a fresh DB)]
           × 1[∀ s ∈ communicate_info: ∃ assistant text m: s.lower() ∈ m.lower().replace(",", "")]

and 0 when the episode did not end normally (``user_stop`` / ``agent_stop``). NL assertions
are diagnostics upstream and are not scored. The DB comparison uses
:func:`~.state.states_equal` (equal to comparing upstream's full-DB hashes, see ``state.py``);
the gold state is replayed once per task and process. A task with no reference actions has the
unchanged DB as its gold (upstream skips the DB check only when ``actions`` is null, which no
airline or retail task has).

A reference action that fails changes nothing and the replay goes on, as upstream (which
logs it): retail's tasks have 23 such calls by design (a mistyped email, a refused write, ...),
airline's none. Each domain pins these counts per task
(:attr:`~.domain.TauDomain.failing_reference_actions`); another count is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..caching import once_per_key
from ..core import ToolCall, validate_arguments
from ..core.verifier import EpisodeScore, agent_texts, communicate_match
from .domain import TauDomain
from .state import TauState, states_equal, touched_dumps
from .tasks import Task


def apply_calls(domain: TauDomain, state: TauState, calls: Iterable[ToolCall]) -> tuple[int, int]:
    """Run ``calls`` in order on ``state`` as the env does (schema-invalid or unknown calls and
    tool errors change nothing); return (#errors, #schema-valid write calls)."""
    specs = {s.name: s for s in domain.tool_specs()}
    errors = writes = 0
    for call in calls:
        spec = specs.get(call.name)
        if spec is None or validate_arguments(spec.parameters, call.arguments):
            errors += 1
            continue
        writes += spec.writes
        try:
            domain.run_call(state, call)
        except domain.tool_errors:
            errors += 1
    return errors, writes


@once_per_key  # one gold state per (domain, folder, task), also when envs score from several threads at once
def _gold(domain: TauDomain, path: Path, task_id: str) -> tuple[TauState, dict]:
    task = next(t for t in domain.tasks(path) if t.id == task_id)
    state = domain.fresh_state(path)
    failed, _ = apply_calls(domain, state, task.actions)
    expected = domain.failing_reference_actions.get(task.id, 0)
    if failed != expected:
        raise RuntimeError(f"{failed} reference action(s) of {domain.label} task {task.id} failed, {expected} in the "
                           "pinned data; the data or the tools are not the pinned version")
    return state, touched_dumps(state)


def gold_state(domain: TauDomain, task: Task, data_dir: str | os.PathLike[str] | None = None) -> tuple[TauState, dict]:
    """The state after the task's reference actions (computed once per task and cached)."""
    return _gold(domain, domain.data_dir(data_dir), task.id)


def score_state(domain: TauDomain, task: Task, state: TauState, agent_messages: Iterable[str | Mapping[str, Any]],
                write_calls: int, termination: str, data_dir: str | os.PathLike[str] | None = None) -> EpisodeScore:
    """Score a finished episode's live state (what the env calls; no replay)."""
    gold, gold_dumps = gold_state(domain, task, data_dir)
    db_ok = states_equal(state, gold, gold_dumps)
    comm_ok = communicate_match(task.communicate_info, agent_texts(agent_messages))
    return EpisodeScore.of(db_ok, comm_ok, write_calls, task.category, termination)


def as_calls(tool_calls: Iterable[ToolCall | Mapping[str, Any]]) -> list[ToolCall]:
    """ToolCall or ``{"name", "arguments"[, "id"]}`` items as ToolCalls."""
    return [c if isinstance(c, ToolCall) else ToolCall(c["name"], dict(c.get("arguments") or {}), str(c.get("id", i)))
            for i, c in enumerate(tool_calls)]


def evaluate_episode(domain: TauDomain, task: Task, tool_calls: Iterable[ToolCall | Mapping[str, Any]],
                     agent_messages: Iterable[str | Mapping[str, Any]], termination: str = "user_stop",
                     data_dir: str | os.PathLike[str] | None = None) -> EpisodeScore:
    """Score a finished episode from its tool calls and agent messages, as upstream does:
    replay ``tool_calls`` on a fresh DB, compare with the gold DB, check ``communicate_info``
    against the assistant texts (strings or assistant message dicts; text sent with a tool
    call counts)."""
    state = domain.fresh_state(domain.data_dir(data_dir))
    _, writes = apply_calls(domain, state, as_calls(tool_calls))
    return score_state(domain, task, state, agent_messages, writes, termination, data_dir)
