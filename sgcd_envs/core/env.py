"""The :class:`UserSimulator` protocol and the :class:`ToolUseEnv` Gymnasium base class.

Conventions follow the agent-RL ecosystem (SkyRL-Gym, verifiers, verl agent loops): the
action is the raw assistant completion, observations are OpenAI chat messages, tools are
OpenAI function schemas and tool results are ``role: "tool"`` messages carrying the call id.

Agent mistakes (bad JSON, unknown tool, wrong arguments, a tool raising one of the env's
declared ``tool_error_types``) become ``"Error: ..."`` observations and never change the
environment state. Anything else that raises is a bug of ours and propagates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
from gymnasium.error import ResetNeeded

from .parsing import ParsedAction, ToolCall, parse_tool_calls, replace_lone_surrogates
from .schema import ToolSpec, validate_arguments
from .spaces import AgentAction, ChatMessages
from sgcd_common import did_you_mean

__all__ = [
    "AGENT_STOP_TOKEN",
    "INVALID_CALL_NAME",
    "NORMAL_TERMINATIONS",
    "USER_ERROR",
    "USER_SIDE",
    "USER_STOP_TOKENS",
    "ToolExecutionError",
    "ToolUseEnv",
    "UserSimulator",
    "is_user_side",
    "whitespace_token_count",
]

AGENT_STOP_TOKEN = "###STOP###"
"""The agent ends the conversation by including this token in a message (as in τ²/τ³)."""

USER_STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
"""Tokens with which a user simulator ends the episode (upstream τ²/τ³ user simulator)."""

NORMAL_TERMINATIONS = frozenset({"user_stop", "agent_stop"})
"""Termination reasons that keep the verifier reward; every other end scores 0 (upstream)."""

USER_ERROR = "user_error"
"""Termination reason when the user simulator failed (one of its ``error_types``); reward 0."""

INVALID_CALL_NAME = "invalid_tool_call"
"""Name recorded in the assistant message for a call block that could not be parsed."""

USER_SIDE = "user"
"""``message["requestor"]`` of the messages of a dual-control user's own tool calls (its call
message and their results, as upstream τ²'s ``requestor``): kept in the trajectory, never in
the agent's observation."""


def is_user_side(message: Mapping[str, Any]) -> bool:
    """Whether a trajectory message belongs to the user's own tool use (hidden from the agent)."""
    return message.get("requestor") == USER_SIDE


class ToolExecutionError(ValueError):
    """A tool refused the call (an agent mistake). Becomes an error observation."""


@runtime_checkable
class UserSimulator(Protocol):
    """The user side of a conversation.

    ``reset(task, seed)`` returns the first user message of an episode;
    ``respond(messages)`` returns the next user message given the conversation so far
    (OpenAI chat messages, the last one the agent's). A reply containing one of
    :data:`USER_STOP_TOKENS` ends the episode. ``name`` labels results
    (``info["user_simulator"]``), e.g. ``"scripted-stand-in"`` or ``"llm:<model>"``.

    Dual control (an env whose user has tools of its own, e.g. τ²-telecom's phone): the env
    calls the simulator's ``bind_tools(schemas)``, if it has one, once at construction with the
    user's OpenAI tool schemas, and ``respond`` may then answer with an OpenAI-style message
    that carries ``tool_calls`` (``{"role": "user", "content": ..., "tool_calls": [...]}``)
    instead of a text. The env runs those calls on the user's side and asks again, the
    conversation now holding the user's call message and its ``role: "tool"`` results (marked
    ``"requestor": "user"``), until the user answers with a text. The agent sees none of the
    user's calls or results (:data:`USER_SIDE`).

    A simulator may also declare ``error_types``: the exceptions its ``reset``/``respond`` raise
    when the simulator itself fails (e.g. the LLM user's server is down after its retries). The
    env ends that episode as ``user_error`` (reward 0, the reason in ``info["user_error"]``)
    instead of letting them propagate. Everything else a simulator raises propagates.
    """

    name: str

    def reset(self, task: Any, seed: int | None = None) -> str: ...

    def respond(self, messages: list[dict[str, Any]]) -> str: ...


def whitespace_token_count(text: str) -> int:
    """Token estimate: ``max(#whitespace-separated words, ceil(len(text) / 4))``."""
    return max(len(text.split()), -(-len(text) // 4))


def _copy_message(m: dict[str, Any]) -> dict[str, Any]:
    """Fresh copy of a chat message (strings are shared: immutable)."""
    out = dict(m)
    if "tool_calls" in m:
        out["tool_calls"] = [{**c, "function": dict(c["function"])} for c in m["tool_calls"]]
    return out


def _clean_strings(d: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``d`` with lone surrogates replaced in its string values (one level deep)."""
    return {k: replace_lone_surrogates(v) if isinstance(v, str) else v for k, v in d.items()}


def _clean_message(m: dict[str, Any]) -> dict[str, Any]:
    """``m`` with lone surrogates replaced in its text: content, name, ids and tool calls."""
    out = _clean_strings(m)
    if "tool_calls" in m:
        out["tool_calls"] = [{**_clean_strings(c), "function": _clean_strings(c["function"])}
                             for c in m["tool_calls"]]
    return out


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one line of at most ``limit`` characters (for ``info`` fields)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return replace_lone_surrogates(text if len(text) <= limit else text[: limit - 1] + "…")


class ToolUseEnv(gym.Env):
    """Base class of the text tool-use environments.

    ## Description
    A conversation between an agent (the policy), a user simulator and a set of tools.
    Subclasses provide the task, the tools and the verifier.

    ## Action Space
    :class:`AgentAction`: the raw assistant text, parsed by :func:`parse_tool_calls`, or an
    already-parsed call dict. A text without tool calls is a message to the user; a text with
    calls runs *at most* those calls (in order) and returns their results to the agent
    (any text beside the calls is kept as the assistant message content). Calls stop once the
    episode's ``max_errors`` or ``max_messages`` is reached (the episode then ends).

    ## Observation Space
    :class:`ChatMessages`: the whole conversation so far as OpenAI chat messages (no system
    message: build it from ``info["policy"]`` and ``info["tools"]``). A fresh copy each step.

    ## Rewards
    0 on every step; at the end the subclass's verifier reward if the episode ended normally
    (``info["termination"]`` in :data:`NORMAL_TERMINATIONS`), else 0.

    ## Episode End
    Termination: the user replies with a stop token (``user_stop``), the agent sends
    :data:`AGENT_STOP_TOKEN` (``agent_stop``) or makes ``max_errors`` erroneous calls
    (``too_many_errors``, reward 0; upstream τ² uses 10) or the user simulator fails
    (``user_error``, reward 0, the reason in ``info["user_error"]``; see :class:`UserSimulator`;
    a failure in ``reset`` is in the reset info and ends the episode at the first step, which
    runs nothing). Truncation (reward 0): the conversation reaches ``max_messages``
    (``max_steps``; upstream cap 200), ``max_turns`` agent actions (``max_turns``) or
    ``max_tokens`` conversation tokens (``max_tokens``).
    Stepping after the end raises :class:`gymnasium.error.ResetNeeded`.

    ## Error observations
    ``{"role": "tool", "tool_call_id": id, "name": tool, "content": "Error: ..."}`` for a
    malformed call block (recorded as a call named ``invalid_tool_call``), an unknown tool,
    arguments that fail the tool's JSON schema (checked before anything runs) and a tool
    raising one of ``tool_error_types``. None of these changes the state. Hostile text is
    bounded (see :func:`parse_tool_calls`): JSON nested deeper than :data:`MAX_JSON_DEPTH` is a
    malformed call, and lone surrogates (e.g. from the escape ``"\\ud800"``) are replaced by
    U+FFFD in every message the env returns.

    ## Arguments
    ``user`` (a :class:`UserSimulator`), ``max_turns``, ``max_tokens``, ``token_counter``
    (``str -> int``, default :func:`whitespace_token_count`), ``max_errors``,
    ``max_messages``, ``max_tool_output_chars`` (longer outputs are cut and marked),
    ``user_tools`` (the user's own tools in a dual-control env; see :class:`UserSimulator`: the
    user's calls are checked and run like the agent's, through :meth:`_run_user_tool`, and their
    errors count towards ``max_errors``, as upstream τ²'s orchestrator counts both sides').
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}
    tool_error_types: ClassVar[tuple[type[BaseException], ...]] = (ValueError,)
    """Exceptions a tool raises for an agent mistake; anything else propagates (our bug)."""

    def __init__(
        self,
        tools: Sequence[ToolSpec],
        user: UserSimulator,
        *,
        max_turns: int = 100,
        max_tokens: int | None = None,
        token_counter: Callable[[str], int] | None = None,
        max_errors: int = 10,
        max_messages: int = 200,
        max_tool_output_chars: int = 50_000,
        render_mode: str | None = None,
        user_tools: Sequence[ToolSpec] = (),
    ) -> None:
        for label, value in (("max_turns", max_turns), ("max_errors", max_errors), ("max_messages", max_messages),
                             ("max_tool_output_chars", max_tool_output_chars)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
        if not isinstance(user, UserSimulator):
            raise TypeError(f"user must implement UserSimulator (name, reset, respond), got {type(user).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.tools: dict[str, ToolSpec] = {t.name: t for t in tools}
        self.user_tools: dict[str, ToolSpec] = {t.name: t for t in user_tools}
        self.user = user
        bind_tools = getattr(user, "bind_tools", None)
        if self.user_tools and callable(bind_tools):
            bind_tools([copy.deepcopy(t.schema) for t in self.user_tools.values()])
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.token_counter = token_counter or whitespace_token_count
        self.max_errors = max_errors
        self.max_messages = max_messages
        self.max_tool_output_chars = max_tool_output_chars
        self.render_mode = render_mode
        self.action_space = AgentAction(tool_names=list(self.tools))
        self.observation_space = ChatMessages(max_messages=max_messages + 64)
        self._messages: list[dict[str, Any]] = []
        self._done: str | None = None
        self._user_failure: str | None = None
        self._started = False
        self._turns = self._tokens = self._errors = self._write_calls = self._writes_done = 0
        self._calls: list[ToolCall] = []
        self._user_calls: list[ToolCall] = []

    # -- subclass hooks ------------------------------------------------------------
    def _begin_episode(self, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Start a task from ``options`` and ``self.np_random``; return (task, reset info)."""
        raise NotImplementedError

    def _run_tool(self, call: ToolCall) -> str:
        """Run a schema-valid call on the episode state; raise ``tool_error_types`` for agent
        mistakes, leaving the state unchanged."""
        raise NotImplementedError

    def _run_user_tool(self, call: ToolCall) -> str:
        """Run a schema-valid call of the user's (dual control, ``user_tools``); as :meth:`_run_tool`."""
        raise NotImplementedError(f"{type(self).__name__} declares user_tools but does not run them")

    def _score(self, termination: str) -> dict[str, Any]:
        """Verifier parts for the finished episode; must contain ``reward`` (normal end)."""
        raise NotImplementedError

    # -- gymnasium API -------------------------------------------------------------
    def tool_schemas(self) -> list[dict[str, Any]]:
        """OpenAI function schemas of the tools (fresh copies)."""
        return [copy.deepcopy(t.schema) for t in self.tools.values()]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        self._task, info = self._begin_episode(options)
        user_seed = int(self.np_random.integers(0, 2**31 - 1))
        self._user_failure = None
        try:
            first = self.user.reset(self._task, seed=user_seed)
        except self._user_error_types() as err:
            first, self._user_failure = "", _one_line(err)
        if not isinstance(first, str):
            raise TypeError(f"{type(self.user).__name__}.reset must return str, got {type(first).__name__}")
        self._messages = []
        self._calls = []
        self._user_calls = []
        self._turns = self._tokens = self._errors = self._write_calls = self._writes_done = 0
        self._done = None
        self._started = True
        self._append({"role": "user", "content": first})
        info = {**info, "tools": self.tool_schemas(), "user_simulator": self.user.name}
        if self._user_failure is not None:
            info[USER_ERROR] = self._user_failure
        return self._observation(), info

    def step(self, action: str | Mapping[str, Any]):
        if not self._started:
            raise ResetNeeded("Cannot call step() before reset().")
        if self._done is not None:
            raise ResetNeeded(f"The episode has ended ({self._done}); call reset() before step().")
        if not isinstance(action, (str, Mapping)):
            raise TypeError(
                f"action must be a str (assistant text) or a mapping (a parsed tool call), got {type(action).__name__}"
            )
        self._turns += 1
        # A simulator that failed at reset has nothing to answer: end before running anything.
        termination = USER_ERROR if self._user_failure is not None else self._play(action)
        truncation: str | None = None
        if termination is None:
            if len(self._messages) >= self.max_messages:
                truncation = "max_steps"
            elif self._turns >= self.max_turns:
                truncation = "max_turns"
            elif self.max_tokens is not None and self._tokens >= self.max_tokens:
                truncation = "max_tokens"

        reward = 0.0
        info: dict[str, Any] = {"turn": self._turns, "tool_errors": self._errors}
        reason = termination or truncation
        if reason is not None:
            self._done = reason
            parts = self._score(reason)
            reward = float(parts["reward"]) if reason in NORMAL_TERMINATIONS else 0.0
            info.update(parts)
            info.update(reward=reward, termination=reason, write_calls=self._write_calls,
                        write_calls_succeeded=self._writes_done, user_simulator=self.user.name)
            if self.user_tools:
                info["user_tool_calls"] = len(self._user_calls)
            if reason == USER_ERROR:
                info[USER_ERROR] = self._user_failure
        return self._observation(), reward, termination is not None, truncation is not None, info

    def _play(self, action: str | Mapping[str, Any]) -> str | None:
        """Record the agent's action, run its calls or get the user's reply; the termination
        reason it causes, if any."""
        parsed = parse_tool_calls(action, id_prefix=f"call_{self._turns}")
        if self._record_and_run(parsed, {"role": "assistant"}):
            return "too_many_errors" if self._errors >= self.max_errors else None
        if AGENT_STOP_TOKEN in parsed.content:
            return "agent_stop"
        return self._user_turn()

    def _user_turn(self) -> str | None:
        """Get the user's reply (running a dual-control user's own tool calls first, until it
        speaks); the termination reason it causes, if any."""
        rounds = 0
        while True:
            try:
                reply = self.user.respond(self._trajectory())
            except self._user_error_types() as err:
                self._user_failure = _one_line(err)
                return USER_ERROR
            if isinstance(reply, Mapping) and self.user_tools:
                text = reply.get("content") or ""
                if not isinstance(text, str):
                    raise TypeError(f"{type(self.user).__name__}.respond: a message's content must be str")
                if any(tok in text for tok in USER_STOP_TOKENS) or not reply.get("tool_calls"):
                    reply = text  # a stop ends the episode before its calls run, as upstream
                else:
                    rounds += 1
                    self._record_and_run(parse_tool_calls(reply, id_prefix=f"user_{self._turns}_{rounds}"),
                                         {"role": "user"}, USER_SIDE)
                    if self._errors >= self.max_errors:
                        return "too_many_errors"
                    if len(self._messages) >= self.max_messages:
                        return None  # truncated (max_steps) by step()
                    continue
            if not isinstance(reply, str):
                kind = "str or, with user_tools, a message mapping" if self.user_tools else "str"
                raise TypeError(f"{type(self.user).__name__}.respond must return {kind}, got {type(reply).__name__}")
            self._append({"role": "user", "content": reply})
            return "user_stop" if any(tok in reply for tok in USER_STOP_TOKENS) else None

    def _record_and_run(self, parsed: ParsedAction, message: dict[str, Any], requestor: str | None = None) -> bool:
        """Append ``message`` with the parsed text and calls (malformed blocks recorded as
        :data:`INVALID_CALL_NAME`), then answer each call, malformed ones first, until the error
        or message budget is spent; ``requestor`` :data:`USER_SIDE`: the user's calls. Whether
        the action had calls."""
        tool_calls = [c.to_openai() for c in parsed.calls] + [
            {"id": cid, "type": "function", "function": {"name": INVALID_CALL_NAME, "arguments": raw}}
            for cid, raw in parsed.invalid
        ]
        message = {**message, "content": parsed.content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if requestor is not None:
            message["requestor"] = requestor
        self._append(message)
        for (cid, _raw), err in zip(parsed.invalid, parsed.errors):
            if self._budget_spent():
                return True
            self._tool_message(cid, INVALID_CALL_NAME, "Error: " + err, error=True, requestor=requestor)
        for call in parsed.calls:
            if self._budget_spent():
                return True
            self._execute(call, requestor=requestor)
        return bool(tool_calls)

    def _budget_spent(self) -> bool:
        """Whether the episode's error or message budget is used up: the remaining calls of the
        turn are not run (the episode ends after this step either way)."""
        return self._errors >= self.max_errors or len(self._messages) >= self.max_messages

    def _user_error_types(self) -> tuple[type[BaseException], ...]:
        """The exceptions with which the user simulator reports its own failure (may be none)."""
        return tuple(getattr(self.user, "error_types", ()))

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "\n".join(f"[{m['role']}] {m['content']}" + (f" {m['tool_calls']}" if m.get("tool_calls") else "")
                         for m in self._messages)

    # -- helpers -------------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far as the agent sees it (a copy)."""
        return self._observation()

    @property
    def trajectory(self) -> list[dict[str, Any]]:
        """Every message so far, a dual-control user's own tool use included (a copy)."""
        return self._trajectory()

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Every schema-valid call of the agent to a known tool this episode, in order (errors included)."""
        return list(self._calls)

    @property
    def user_tool_calls(self) -> list[ToolCall]:
        """Every schema-valid call of a dual-control user to one of its tools, in order."""
        return list(self._user_calls)

    def _observation(self) -> list[dict[str, Any]]:
        """The agent's view: the trajectory without the user's own tool use."""
        return [_copy_message(m) for m in self._messages if not is_user_side(m)]

    def _trajectory(self) -> list[dict[str, Any]]:
        return [_copy_message(m) for m in self._messages]

    def _append(self, message: dict[str, Any]) -> None:
        message = _clean_message(message)
        self._messages.append(message)
        if is_user_side(message):  # not in the agent's context
            return
        self._tokens += self.token_counter(message["content"])
        for c in message.get("tool_calls", ()):
            self._tokens += self.token_counter(c["function"]["name"] + c["function"]["arguments"])

    def _tool_message(self, call_id: str, name: str, content: str, error: bool, requestor: str | None = None) -> None:
        if error:
            self._errors += 1
        limit = self.max_tool_output_chars
        if len(content) > limit:
            content = content[:limit] + f"\n...[truncated {len(content) - limit} of {len(content)} characters]"
        message = {"role": "tool", "tool_call_id": call_id, "name": name, "content": content}
        if requestor is not None:
            message["requestor"] = requestor
        self._append(message)

    def _execute(self, call: ToolCall, requestor: str | None = None) -> None:
        """Check and run one parsed call of the agent (``requestor`` None) or of the user (:data:`USER_SIDE`)."""
        by_user = requestor == USER_SIDE
        tools = self.user_tools if by_user else self.tools
        spec = tools.get(call.name)
        if spec is None:
            self._tool_message(call.id, call.name, f"Error: Unknown tool '{call.name}'. Available tools: "
                               f"{', '.join(sorted(tools))}.{did_you_mean(call.name, list(tools))}", True, requestor)
            return
        problems = validate_arguments(spec.parameters, call.arguments)
        if problems:
            self._tool_message(call.id, call.name, f"Error: Invalid arguments for '{call.name}': " + "; ".join(problems),
                               True, requestor)
            return
        (self._user_calls if by_user else self._calls).append(call)
        counts_write = spec.writes and not by_user  # the collapse guard reads the agent's writes
        if counts_write:  # attempted: a schema-valid call to a write tool, whether or not the tool refuses it
            self._write_calls += 1
        try:
            output = self._run_user_tool(call) if by_user else self._run_tool(call)
        except self.tool_error_types as err:
            self._tool_message(call.id, call.name, f"Error: {err}", True, requestor)
            return
        if counts_write:
            self._writes_done += 1
        self._tool_message(call.id, call.name, output, False, requestor)
