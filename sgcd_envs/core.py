"""Core of the sgcd text tool-use environments.

One call type (:class:`ToolCall`), one parser for every supported call format
(:func:`parse_tool_calls`), a tiny JSON-Schema validator for tool arguments
(:func:`validate_arguments`), tool schemas from Python signatures
(:func:`function_schema`), the :class:`UserSimulator` protocol and the
:class:`ToolUseEnv` Gymnasium base class.

Conventions follow the agent-RL ecosystem (SkyRL-Gym, verifiers, verl agent loops): the
action is the raw assistant completion, observations are OpenAI chat messages, tools are
OpenAI function schemas and tool results are ``role: "tool"`` messages carrying the call id.

Agent mistakes (bad JSON, unknown tool, wrong arguments, a tool raising one of the env's
declared ``tool_error_types``) become ``"Error: ..."`` observations and never change the
environment state. Anything else that raises is a bug of ours and propagates.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
from gymnasium import spaces
from gymnasium.error import ResetNeeded

__all__ = [
    "AGENT_STOP_TOKEN",
    "USER_STOP_TOKENS",
    "NORMAL_TERMINATIONS",
    "ChatMessages",
    "AgentAction",
    "ParsedAction",
    "ToolCall",
    "ToolSpec",
    "ToolExecutionError",
    "ToolUseEnv",
    "UserSimulator",
    "did_you_mean",
    "function_schema",
    "parse_tool_calls",
    "validate_arguments",
    "whitespace_token_count",
]

AGENT_STOP_TOKEN = "###STOP###"
"""The agent ends the conversation by including this token in a message (as in τ²/τ³)."""

USER_STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
"""Tokens with which a user simulator ends the episode (upstream τ²/τ³ user simulator)."""

NORMAL_TERMINATIONS = frozenset({"user_stop", "agent_stop"})
"""Termination reasons that keep the verifier reward; every other end scores 0 (upstream)."""

INVALID_CALL_NAME = "invalid_tool_call"
"""Name recorded in the assistant message for a call block that could not be parsed."""


# ----------------------------------------------------------------------------- errors


class ToolExecutionError(ValueError):
    """A tool refused the call (an agent mistake). Becomes an error observation."""


def did_you_mean(value: str, choices: Sequence[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ToolCall:
    """One tool call, whatever format it arrived in.

    ``arguments`` is a plain JSON object; ``id`` is the call id echoed by the tool message.
    """

    name: str
    arguments: dict[str, Any]
    id: str

    def to_openai(self) -> dict[str, Any]:
        """The call as an entry of an OpenAI assistant message's ``tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass(frozen=True)
class ParsedAction:
    """An assistant action split into tool calls, the text to the user and parse errors.

    ``invalid`` holds ``(call id, raw text)`` of each block that looked like a call but could
    not be parsed; ``errors[i]`` is the message for ``invalid[i]``.
    """

    calls: list[ToolCall] = field(default_factory=list)
    content: str = ""
    errors: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)


_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_JSON_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _call_from_object(obj: Any, call_id: str) -> ToolCall | str:
    """Turn one decoded JSON value into a ToolCall, or return an error message.

    Accepts ``{"name", "arguments"}`` (``arguments`` may be an object or a JSON string;
    ``parameters`` is accepted as an alias) and the OpenAI form
    ``{"id"?, "type": "function", "function": {"name", "arguments"}}``.
    """
    if not isinstance(obj, dict):
        return f"a tool call must be a JSON object, got {type(obj).__name__}"
    if isinstance(obj.get("function"), dict):
        call_id = obj["id"] if isinstance(obj.get("id"), str) and obj["id"] else call_id
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return f"a tool call needs a non-empty string 'name', got {name!r}"
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if args is None:
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as err:
            return f"the 'arguments' string of '{name}' is not valid JSON ({err.msg} at char {err.pos})"
    if not isinstance(args, dict):
        return f"the 'arguments' of '{name}' must be a JSON object, got {type(args).__name__}"
    return ToolCall(name=name, arguments=args, id=call_id)


def _looks_like_call(obj: Any) -> bool:
    return isinstance(obj, dict) and (
        "name" in obj and ("arguments" in obj or "parameters" in obj) or isinstance(obj.get("function"), dict)
    )


def parse_tool_calls(action: str | Mapping[str, Any], id_prefix: str = "call") -> ParsedAction:
    """Parse an assistant action into tool calls and the message to the user.

    Supported formats (in this order):

    1. An already-parsed call: a mapping ``{"name", "arguments"}``, the OpenAI call form
       ``{"type": "function", "function": {...}}``, or an OpenAI assistant message
       ``{"content": ..., "tool_calls": [...]}``.
    2. Hermes/Qwen blocks ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
       (an unterminated last block is read to the end of the text).
    3. Bare JSON: the whole text (optionally in a ```json fence) is one call object or a list
       of them, or call objects embedded in prose (decoded with ``json.JSONDecoder.raw_decode``).

    ``arguments`` may be a JSON object or a JSON-encoded string. ``<think>...</think>``
    blocks are dropped from ``content``. Call ids are ``f"{id_prefix}_{k}"`` unless the call
    carries its own. A text without any call is a plain message (``calls == []``).
    """
    counter = iter(range(1_000_000))

    def next_id() -> str:
        return f"{id_prefix}_{next(counter)}"

    calls: list[ToolCall] = []
    errors: list[str] = []
    invalid: list[tuple[str, str]] = []

    def add(obj: Any, raw: str) -> None:
        cid = next_id()
        got = _call_from_object(obj, cid)
        if isinstance(got, ToolCall):
            calls.append(got)
        else:
            errors.append(f"Malformed tool call: {got}.")
            invalid.append((cid, raw))

    if isinstance(action, Mapping):
        action = dict(action)
        if "tool_calls" in action:
            content = action.get("content") or ""
            if not isinstance(content, str):
                errors.append(f"Malformed action: 'content' must be a string, got {type(content).__name__}.")
                invalid.append((next_id(), repr(content)[:200]))
                content = ""
            raw_calls = action["tool_calls"] or []
            if not isinstance(raw_calls, list):
                raw_calls = [raw_calls]
            for obj in raw_calls:
                add(obj, json.dumps(obj, default=str)[:2000])
            return ParsedAction(calls, _THINK_BLOCK.sub("", content).strip(), errors, invalid)
        add(action, json.dumps(action, default=str)[:2000])
        return ParsedAction(calls, "", errors, invalid)

    if not isinstance(action, str):
        raise TypeError(
            f"action must be a str (assistant text) or a mapping (a parsed tool call), got {type(action).__name__}"
        )
    text = _THINK_BLOCK.sub("", action)

    if "<tool_call>" in text:
        for body in _TOOL_CALL_BLOCK.findall(text):
            body = body.strip()
            try:
                obj = json.loads(body)
            except json.JSONDecodeError as err:
                cid = next_id()
                errors.append(f"Malformed tool call: invalid JSON in <tool_call> block ({err.msg} at char {err.pos}).")
                invalid.append((cid, body[:2000]))
                continue
            add(obj, body[:2000])
        content = _TOOL_CALL_BLOCK.sub("", text).strip()
        return ParsedAction(calls, content, errors, invalid)

    stripped = text.strip()
    fence = _JSON_FENCE.match(stripped)
    whole = fence.group(1) if fence else stripped
    if whole[:1] in "{[" and whole:
        try:
            obj = json.loads(whole)
        except json.JSONDecodeError as err:
            if '"name"' in whole:
                cid = next_id()
                errors.append(f"Malformed tool call: invalid JSON ({err.msg} at char {err.pos}).")
                invalid.append((cid, whole[:2000]))
                return ParsedAction(calls, "", errors, invalid)
        else:
            objs = obj if isinstance(obj, list) else [obj]
            if objs and all(_looks_like_call(o) or (isinstance(o, dict) and "name" in o) for o in objs):
                for o in objs:
                    add(o, json.dumps(o, default=str)[:2000])
                return ParsedAction(calls, "", errors, invalid)

    # Calls embedded in prose: decode each '{' that starts a call-shaped object.
    decoder = json.JSONDecoder()
    pieces: list[str] = []
    pos = 0
    start = text.find("{")
    while start != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if _looks_like_call(obj):
            pieces.append(text[pos:start])
            add(obj, text[start:end][:2000])
            pos = end
            start = text.find("{", end)
        else:
            start = text.find("{", end)
    if not calls and not errors:
        return ParsedAction([], stripped, [], [])
    pieces.append(text[pos:])
    return ParsedAction(calls, "".join(pieces).strip(), errors, invalid)


# ----------------------------------------------------------------------------- schemas


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_arguments(schema: Mapping[str, Any], value: Any, path: str = "arguments") -> list[str]:
    """Check ``value`` against a JSON-Schema subset; return the problems (empty = valid).

    Supported keywords: ``type`` (one or a list), ``enum``, ``const``, ``properties``,
    ``required``, ``additionalProperties`` (bool), ``items``, ``anyOf``/``oneOf`` (valid if
    any branch is). ``integer`` rejects floats and booleans (no coercion).
    """
    problems: list[str] = []
    if "anyOf" in schema or "oneOf" in schema:
        branches = schema.get("anyOf", schema.get("oneOf"))
        branch_problems = [validate_arguments(b, value, path) for b in branches]
        if all(branch_problems):
            best = min(branch_problems, key=len)
            problems.extend(best if len(branches) == 1 else [f"{path}: {_short(value)} matches none of the allowed forms; e.g. " + best[0]])
        return problems
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES[t](value) for t in allowed):
            return [f"{path}: expected {' or '.join(allowed)}, got {type(value).__name__} {_short(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {_short(value)} is not one of {schema['enum']}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: must be {_short(schema['const'])}, got {_short(value)}"]
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}: missing required field '{key}'")
        if schema.get("additionalProperties") is False:
            for key in value:
                if key not in props:
                    problems.append(f"{path}: unexpected field '{key}'; allowed: {sorted(props)}.{did_you_mean(key, list(props))}")
        for key, sub in props.items():
            if key in value:
                problems.extend(validate_arguments(sub, value[key], f"{path}.{key}"))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems.extend(validate_arguments(schema["items"], item, f"{path}[{i}]"))
    return problems


def _parse_google_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (summary, {arg: description})."""
    summary_lines: list[str] = []
    args: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    for line in inspect.cleandoc(doc or "").splitlines():
        stripped = line.strip()
        if re.fullmatch(r"(Args|Arguments|Parameters):", stripped):
            section, current = "args", None
            continue
        if re.fullmatch(r"(Returns|Raises|Yields|Examples?|Notes?):", stripped):
            section, current = "other", None
            continue
        if section == "summary":
            summary_lines.append(line)
        elif section == "args":
            m = re.match(r"^\s{0,8}(\w+)(?:\s*\(.*?\))?:\s*(.*)$", line)
            if m and (current is None or len(line) - len(line.lstrip()) <= 4):
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and stripped:
                args[current] = (args[current] + " " + stripped).strip()
    return "\n".join(summary_lines).strip(), args


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**_inline_refs(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
            return merged
        return {k: _inline_refs(v, defs) for k, v in node.items() if k not in ("$defs", "title")}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def function_schema(
    fn: Callable[..., Any],
    name: str | None = None,
    annotation_map: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """OpenAI function schema of ``fn`` from its signature and Google-style docstring.

    Parameter types go through pydantic's JSON-schema generator (``$ref`` inlined, titles
    dropped); ``annotation_map`` may rewrite an annotation first (e.g. ``FlightInfo | dict``
    → ``FlightInfo``). Top-level ``additionalProperties`` is ``False``.
    """
    from pydantic import TypeAdapter  # stdlib + pydantic only; imported lazily

    summary, arg_docs = _parse_google_docstring(inspect.getdoc(fn) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        ann = param.annotation if param.annotation is not inspect.Parameter.empty else Any
        if annotation_map is not None:
            ann = annotation_map(ann)
        raw = TypeAdapter(ann).json_schema()
        prop = _inline_refs(raw, raw.get("$defs", {}))
        if pname in arg_docs:
            prop["description"] = arg_docs[pname]
        properties[pname] = prop
        if param.default is inspect.Parameter.empty:
            required.append(pname)
    return {
        "type": "function",
        "function": {
            "name": name or fn.__name__,
            "description": summary,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


@dataclass(frozen=True)
class ToolSpec:
    """A tool the agent may call: its OpenAI function schema and whether it writes state."""

    schema: dict[str, Any]
    writes: bool = False

    @property
    def name(self) -> str:
        return self.schema["function"]["name"]

    @property
    def parameters(self) -> dict[str, Any]:
        return self.schema["function"]["parameters"]


# ----------------------------------------------------------------------------- user


@runtime_checkable
class UserSimulator(Protocol):
    """The user side of a conversation.

    ``reset(task, seed)`` returns the first user message of an episode;
    ``respond(messages)`` returns the next user message given the conversation so far
    (OpenAI chat messages, the last one the agent's). A reply containing one of
    :data:`USER_STOP_TOKENS` ends the episode. ``name`` labels results
    (``info["user_simulator"]``), e.g. ``"scripted-stand-in"`` or ``"llm:<model>"``.
    """

    name: str

    def reset(self, task: Any, seed: int | None = None) -> str: ...

    def respond(self, messages: list[dict[str, Any]]) -> str: ...


# ----------------------------------------------------------------------------- spaces


def whitespace_token_count(text: str) -> int:
    """Token estimate: ``max(#whitespace-separated words, ceil(len(text) / 4))``."""
    return max(len(text.split()), -(-len(text) // 4))


_ROLES = ("user", "assistant", "tool")
_FUZZ_PIECES = (
    "Hello", "I will check that.", "{", "}", "[", "]", '"name"', '"arguments"', ":", ",", "null",
    "<tool_call>", "</tool_call>", "```json", "```", '"', "\\", "0", "-1", "1e309", "true",
    "###STOP###", "\u00e9\u4e2d", "\n", " ",
)


class AgentAction(spaces.Space):
    """Action space: the assistant's text (``str`` of at most ``max_length`` characters) or
    an already-parsed tool call (a ``dict``).

    ``sample()`` draws a malformed-ish text from pieces of tool-call syntax (a fuzz source),
    not a meaningful action.
    """

    def __init__(self, max_length: int = 100_000, tool_names: Sequence[str] = (), seed: int | None = None):
        self.max_length = max_length
        self.tool_names = tuple(tool_names)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        return (isinstance(x, str) and len(x) <= self.max_length) or isinstance(x, dict)

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> str:
        rng = self.np_random
        pieces = list(_FUZZ_PIECES) + [f'"{n}"' for n in self.tool_names]
        n = int(rng.integers(0, 24))
        return "".join(pieces[int(rng.integers(0, len(pieces)))] for _ in range(n))

    def __repr__(self) -> str:
        return f"AgentAction(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, AgentAction) and other.max_length == self.max_length


class ChatMessages(spaces.Space):
    """Observation space: a list of at most ``max_messages`` OpenAI chat messages.

    Each message is a dict with ``role`` in {"user", "assistant", "tool"} and a ``str``
    ``content``; assistant messages may carry ``tool_calls`` (a list of OpenAI call dicts),
    tool messages carry ``tool_call_id`` and ``name`` (str).
    """

    def __init__(self, max_messages: int = 200, seed: int | None = None):
        self.max_messages = max_messages
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if not isinstance(x, list) or len(x) > self.max_messages:
            return False
        for m in x:
            if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
                return False
            if m["role"] == "tool" and not (isinstance(m.get("tool_call_id"), str) and isinstance(m.get("name"), str)):
                return False
            if "tool_calls" in m and not (
                m["role"] == "assistant"
                and isinstance(m["tool_calls"], list)
                and all(isinstance(c, dict) and isinstance(c.get("function"), dict) for c in m["tool_calls"])
            ):
                return False
        return True

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> list[dict[str, Any]]:
        rng = self.np_random
        n = int(rng.integers(1, min(self.max_messages, 6) + 1))
        return [{"role": ("user", "assistant")[i % 2], "content": f"message {int(rng.integers(0, 1000))}"} for i in range(n)]

    def __repr__(self) -> str:
        return f"ChatMessages(max_messages={self.max_messages})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ChatMessages) and other.max_messages == self.max_messages


# ----------------------------------------------------------------------------- env


def _copy_message(m: dict[str, Any]) -> dict[str, Any]:
    """Fresh copy of a chat message (strings are shared: immutable)."""
    out = dict(m)
    if "tool_calls" in m:
        out["tool_calls"] = [{**c, "function": dict(c["function"])} for c in m["tool_calls"]]
    return out



class ToolUseEnv(gym.Env):
    """Base class of the text tool-use environments.

    ## Description
    A conversation between an agent (the policy), a user simulator and a set of tools.
    Subclasses provide the task, the tools and the verifier.

    ## Action Space
    :class:`AgentAction`: the raw assistant text, parsed by :func:`parse_tool_calls`, or an
    already-parsed call dict. A text without tool calls is a message to the user; a text with
    calls runs *at most* those calls (in order) and returns their results to the agent
    (any text beside the calls is kept as the assistant message content).

    ## Observation Space
    :class:`ChatMessages`: the whole conversation so far as OpenAI chat messages (no system
    message: build it from ``info["policy"]`` and ``info["tools"]``). A fresh copy each step.

    ## Rewards
    0 on every step; at the end the subclass's verifier reward if the episode ended normally
    (``info["termination"]`` in :data:`NORMAL_TERMINATIONS`), else 0.

    ## Episode End
    Termination: the user replies with a stop token (``user_stop``), the agent sends
    :data:`AGENT_STOP_TOKEN` (``agent_stop``) or makes ``max_errors`` erroneous calls
    (``too_many_errors``, reward 0; upstream τ² uses 10). Truncation (reward 0): the
    conversation reaches ``max_messages`` (``max_steps``; upstream cap 200), ``max_turns``
    agent actions (``max_turns``) or ``max_tokens`` conversation tokens (``max_tokens``).
    Stepping after the end raises :class:`gymnasium.error.ResetNeeded`.

    ## Error observations
    ``{"role": "tool", "tool_call_id": id, "name": tool, "content": "Error: ..."}`` for a
    malformed call block (recorded as a call named ``invalid_tool_call``), an unknown tool,
    arguments that fail the tool's JSON schema (checked before anything runs) and a tool
    raising one of ``tool_error_types``. None of these changes the state.

    ## Arguments
    ``user`` (a :class:`UserSimulator`), ``max_turns``, ``max_tokens``, ``token_counter``
    (``str -> int``, default :func:`whitespace_token_count`), ``max_errors``,
    ``max_messages``, ``max_tool_output_chars`` (longer outputs are cut and marked).
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
        self.user = user
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
        self._started = False
        self._turns = self._tokens = self._errors = self._write_calls = 0
        self._calls: list[ToolCall] = []

    # -- subclass hooks ------------------------------------------------------------
    def _begin_episode(self, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Start a task from ``options`` and ``self.np_random``; return (task, reset info)."""
        raise NotImplementedError

    def _run_tool(self, call: ToolCall) -> str:
        """Run a schema-valid call on the episode state; raise ``tool_error_types`` for agent
        mistakes, leaving the state unchanged."""
        raise NotImplementedError

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
        first = self.user.reset(self._task, seed=user_seed)
        if not isinstance(first, str):
            raise TypeError(f"{type(self.user).__name__}.reset must return str, got {type(first).__name__}")
        self._messages = []
        self._calls = []
        self._turns = self._tokens = self._errors = self._write_calls = 0
        self._done = None
        self._started = True
        self._append({"role": "user", "content": first})
        info = {**info, "tools": self.tool_schemas(), "user_simulator": self.user.name}
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
        parsed = parse_tool_calls(action, id_prefix=f"call_{self._turns}")
        tool_calls = [c.to_openai() for c in parsed.calls] + [
            {"id": cid, "type": "function", "function": {"name": INVALID_CALL_NAME, "arguments": raw}}
            for cid, raw in parsed.invalid
        ]
        assistant: dict[str, Any] = {"role": "assistant", "content": parsed.content}
        if tool_calls:
            assistant["tool_calls"] = tool_calls
        self._append(assistant)

        termination: str | None = None
        truncation: str | None = None
        if tool_calls:
            for (cid, _raw), err in zip(parsed.invalid, parsed.errors):
                self._tool_message(cid, INVALID_CALL_NAME, "Error: " + err, error=True)
            for call in parsed.calls:
                self._execute(call)
            if self._errors >= self.max_errors:
                termination = "too_many_errors"
        elif AGENT_STOP_TOKEN in parsed.content:
            termination = "agent_stop"
        else:
            reply = self.user.respond(self._observation())
            if not isinstance(reply, str):
                raise TypeError(f"{type(self.user).__name__}.respond must return str, got {type(reply).__name__}")
            self._append({"role": "user", "content": reply})
            if any(tok in reply for tok in USER_STOP_TOKENS):
                termination = "user_stop"
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
                        user_simulator=self.user.name)
        return self._observation(), reward, termination is not None, truncation is not None, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "\n".join(f"[{m['role']}] {m['content']}" + (f" {m['tool_calls']}" if m.get("tool_calls") else "")
                         for m in self._messages)

    # -- helpers -------------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far (a copy)."""
        return self._observation()

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Every schema-valid call to a known tool this episode, in order (errors included)."""
        return list(self._calls)

    def _observation(self) -> list[dict[str, Any]]:
        return [_copy_message(m) for m in self._messages]

    def _append(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        self._tokens += self.token_counter(message["content"])
        for c in message.get("tool_calls", ()):
            self._tokens += self.token_counter(c["function"]["name"] + c["function"]["arguments"])

    def _tool_message(self, call_id: str, name: str, content: str, error: bool) -> None:
        if error:
            self._errors += 1
        limit = self.max_tool_output_chars
        if len(content) > limit:
            content = content[:limit] + f"\n...[truncated {len(content) - limit} of {len(content)} characters]"
        self._append({"role": "tool", "tool_call_id": call_id, "name": name, "content": content})

    def _execute(self, call: ToolCall) -> None:
        spec = self.tools.get(call.name)
        if spec is None:
            self._tool_message(call.id, call.name, f"Error: Unknown tool '{call.name}'. Available tools: "
                               f"{', '.join(sorted(self.tools))}.{did_you_mean(call.name, list(self.tools))}", True)
            return
        problems = validate_arguments(spec.parameters, call.arguments)
        if problems:
            self._tool_message(call.id, call.name, f"Error: Invalid arguments for '{call.name}': " + "; ".join(problems), True)
            return
        self._calls.append(call)
        if spec.writes:
            self._write_calls += 1
        try:
            output = self._run_tool(call)
        except self.tool_error_types as err:
            self._tool_message(call.id, call.name, f"Error: {err}", True)
            return
        self._tool_message(call.id, call.name, output, False)
