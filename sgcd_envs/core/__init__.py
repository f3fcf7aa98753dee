"""Core of the sgcd text tool-use environments, one idea per module:

- :mod:`.parsing`: one call type (:class:`ToolCall`) and one parser for every supported call
  format (:func:`parse_tool_calls`), bounded on hostile text.
- :mod:`.schema`: a tiny JSON-Schema validator for tool arguments (:func:`validate_arguments`),
  tool schemas from Python signatures (:func:`function_schema`) and :class:`ToolSpec`.
- :mod:`.spaces`: the Gymnasium spaces :class:`AgentAction` and :class:`ChatMessages`.
- :mod:`.env`: the :class:`UserSimulator` protocol and the :class:`ToolUseEnv` Gymnasium base class.
- :mod:`.verifier`: the τ-style communicate check (:func:`communicate_match`) and :class:`EpisodeScore`.
- :mod:`.suggest`: :func:`did_you_mean`, the hint of every unknown-name error.

Everything below is importable from ``sgcd_envs.core``; parsing internals (e.g. ``json_extent``)
are patched or read on :mod:`sgcd_envs.core.parsing` itself.
"""

from .env import (
    AGENT_STOP_TOKEN,
    NORMAL_TERMINATIONS,
    USER_ERROR,
    USER_SIDE,
    USER_STOP_TOKENS,
    ToolExecutionError,
    ToolUseEnv,
    UserSimulator,
    is_user_side,
    whitespace_token_count,
)
from .parsing import MAX_JSON_DEPTH, ParsedAction, ToolCall, parse_tool_calls, replace_lone_surrogates
from .schema import ToolSpec, function_schema, validate_arguments
from .spaces import AgentAction, ChatMessages
from .verifier import EpisodeScore, agent_texts, communicate_match

__all__ = [
    "AGENT_STOP_TOKEN",
    "MAX_JSON_DEPTH",
    "USER_ERROR",
    "USER_SIDE",
    "USER_STOP_TOKENS",
    "NORMAL_TERMINATIONS",
    "ChatMessages",
    "AgentAction",
    "EpisodeScore",
    "ParsedAction",
    "ToolCall",
    "ToolSpec",
    "ToolExecutionError",
    "ToolUseEnv",
    "UserSimulator",
    "agent_texts",
    "communicate_match",
    "function_schema",
    "is_user_side",
    "parse_tool_calls",
    "replace_lone_surrogates",
    "validate_arguments",
    "whitespace_token_count",
]
