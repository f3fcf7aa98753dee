"""τ³-airline verifier, as upstream (tau2 ``evaluator_env.py``, ``evaluator_communicate.py``,
``docs/evaluation.md``; every airline task has ``reward_basis = ["DB", "COMMUNICATE"]``):

    reward = 1[hash(final DB) == hash(DB after replaying the reference actions on a fresh DB)]
           × 1[∀ s ∈ communicate_info: ∃ assistant text m: s.lower() ∈ m.lower().replace(",", "")]

and 0 when the episode did not end normally (``user_stop`` / ``agent_stop``). NL assertions
are diagnostics upstream and are not scored. The DB comparison uses
:func:`~.state.states_equal` (equal to comparing upstream's full-DB hashes, see ``state.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..caching import once_per_key
from ..core import ToolCall, validate_arguments
from ..core.verifier import EpisodeScore, agent_texts, communicate_match
from . import data
from .state import AirlineState, states_equal, touched_dumps
from .tasks import Task, _all_tasks
from .tools import TOOL_ERRORS, run_call, tool_specs


def apply_calls(state: AirlineState, calls: Iterable[ToolCall]) -> tuple[int, int]:
    """Run ``calls`` in order on ``state`` as the env does (schema-invalid or unknown calls and
    tool errors change nothing); return (#errors, #schema-valid write calls)."""
    specs = {s.name: s for s in tool_specs()}
    errors = writes = 0
    for call in calls:
        spec = specs.get(call.name)
        if spec is None or validate_arguments(spec.parameters, call.arguments):
            errors += 1
            continue
        writes += spec.writes
        try:
            run_call(state, call)
        except TOOL_ERRORS:
            errors += 1
    return errors, writes


@once_per_key  # one gold state per (folder, task), also when envs score from several threads at once
def _gold(path: Path, task_id: str) -> tuple[AirlineState, dict]:
    task = next(t for t in _all_tasks(path) if t.id == task_id)
    state = AirlineState(data.base_db(path))
    failed, _ = apply_calls(state, task.actions)
    if failed:
        raise RuntimeError(f"{failed} reference action(s) of task {task.id} failed; the data is not the pinned version")
    return state, touched_dumps(state)


def gold_state(task: Task, data_dir: str | os.PathLike[str] | None = None) -> tuple[AirlineState, dict]:
    """The state after the task's reference actions (computed once per task and cached)."""
    return _gold(data.data_dir(data_dir), task.id)


def score_state(task: Task, state: AirlineState, agent_messages: Iterable[str | Mapping[str, Any]],
                write_calls: int, termination: str, data_dir: str | os.PathLike[str] | None = None) -> EpisodeScore:
    """Score a finished episode's live state (what the env calls; no replay)."""
    gold, gold_dumps = gold_state(task, data_dir)
    db_ok = states_equal(state, gold, gold_dumps)
    comm_ok = communicate_match(task.communicate_info, agent_texts(agent_messages))
    return EpisodeScore.of(db_ok, comm_ok, write_calls, task.category, termination)


def evaluate_episode(task: Task, tool_calls: Iterable[ToolCall | Mapping[str, Any]],
                     agent_messages: Iterable[str | Mapping[str, Any]], termination: str = "user_stop",
                     data_dir: str | os.PathLike[str] | None = None) -> EpisodeScore:
    """Score a finished episode from its tool calls and agent messages, as upstream does:
    replay ``tool_calls`` (ToolCall or ``{"name", "arguments"}``) on a fresh DB, compare with
    the gold DB, check ``communicate_info`` against the assistant texts (strings or assistant
    message dicts; text sent with a tool call counts)."""
    calls = [c if isinstance(c, ToolCall) else ToolCall(c["name"], dict(c.get("arguments") or {}), str(c.get("id", i)))
             for i, c in enumerate(tool_calls)]
    state = AirlineState(data.base_db(data.data_dir(data_dir)))
    _, writes = apply_calls(state, calls)
    return score_state(task, state, agent_messages, writes, termination, data_dir)
