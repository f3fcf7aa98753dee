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
    "MAX_JSON_DEPTH",
    "USER_ERROR",
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
    "replace_lone_surrogates",
    "validate_arguments",
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

MAX_JSON_DEPTH = 64
"""Deepest nesting a JSON value in an action may have. Deeper text is an error observation,
found by an iterative scan before anything is decoded (the ``json`` module recurses per level)."""

MAX_FAILED_CANDIDATES = 64
"""How many JSON-looking starts in prose may fail to decode before the parser stops looking
for more embedded calls; with it, parsing any text costs O(``MAX_FAILED_CANDIDATES`` · length)."""

_STRUCTURE = re.compile(r'[][{}"]')
_STRING_REST = re.compile(r'(?:[^"\\]++|\\.)*+"', re.DOTALL)  # after an opening quote; possessive: linear
_CALL_START = re.compile(r'\{\s*"|\[\s*\{')  # an object with a key, or a list opening with an object
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"


def replace_lone_surrogates(text: str) -> str:
    """``text`` with every lone surrogate (U+D800..U+DFFF, e.g. from the JSON escape ``"\\ud800"``)
    replaced by U+FFFD, so that it encodes as UTF-8 (tokenizers raise on surrogates)."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


def json_extent(text: str, start: int, max_depth: int = MAX_JSON_DEPTH) -> tuple[int | None, bool]:
    """Where the JSON array or object opening at ``text[start]`` closes, found iteratively.

    Strings are skipped (backslash escapes honoured) and any closing bracket closes any opening
    one (a mismatch is left to the decoder). Returns ``(end, too_deep)``: ``end`` is the index
    after the closing bracket, or None when the text ends first or the nesting passes
    ``max_depth`` (then ``too_deep`` is True). Costs O(end - start).
    """
    depth = 0
    pos = start
    while (match := _STRUCTURE.search(text, pos)) is not None:
        char, pos = match.group(), match.end()
        if char == '"':
            rest = _STRING_REST.match(text, pos)
            if rest is None:
                return None, False  # an unterminated string runs to the end
            pos = rest.end()
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return None, True
        else:
            depth -= 1
            if depth == 0:
                return pos, False
    return None, False


def decode_json(text: str) -> tuple[Any, str | None]:
    """``(value, None)`` for JSON ``text``, else ``(None, reason)``; never recurses deeper than
    :data:`MAX_JSON_DEPTH` (checked first), so hostile nesting is a reason, not a RecursionError."""
    if text[:1] in ("[", "{") and json_extent(text, 0)[1]:
        return None, _TOO_DEEP
    return _loads_measured(text)


def _loads_measured(text: str) -> tuple[Any, str | None]:
    """``json.loads`` of a text whose nesting is known to be within :data:`MAX_JSON_DEPTH`."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as err:
        return None, f"{err.msg} at char {err.pos}"


def _strip_json_fence(text: str) -> str:
    """The inside of a text wrapped in a ```json (or bare ```) fence, else ``text`` itself."""
    if len(text) < 6 or not (text.startswith("```") and text.endswith("```")):
        return text
    inner = text[3:-3]
    return (inner[4:] if inner.startswith("json") else inner).strip()


@dataclass(frozen=True)
class EmbeddedCalls:
    """Call-shaped JSON values found in prose: ``spans`` are ``(start, end, call objects)`` in
    order; ``too_deep_at`` is where a value nested past :data:`MAX_JSON_DEPTH` (the scan stopped)."""

    spans: list[tuple[int, int, list[Any]]]
    too_deep_at: int | None = None


def _looks_like_call(obj: Any) -> bool:
    return isinstance(obj, dict) and (
        "name" in obj and ("arguments" in obj or "parameters" in obj) or isinstance(obj.get("function"), dict)
    )


def find_embedded_calls(text: str) -> EmbeddedCalls:
    """Every call object (or list of call objects) in ``text``, left to right, in linear time.

    Each candidate start (``{"`` or ``[{``) is measured with :func:`json_extent` and only then
    decoded. A decoded object that is no call is skipped whole; a candidate that does not decode
    (or a list of non-calls) is retried one character on, at most :data:`MAX_FAILED_CANDIDATES`
    times per text.
    """
    spans: list[tuple[int, int, list[Any]]] = []
    failures = 0
    pos = 0
    while failures < MAX_FAILED_CANDIDATES and (match := _CALL_START.search(text, pos)) is not None:
        start = match.start()
        end, too_deep = json_extent(text, start)
        if too_deep:
            return EmbeddedCalls(spans, too_deep_at=start)
        value, problem = _loads_measured(text[start:end]) if end is not None else (None, "unclosed")
        items = value if isinstance(value, list) else [value]
        if problem is None and items and all(_looks_like_call(o) for o in items):
            spans.append((start, end, items))
            pos = end
        elif problem is None and isinstance(value, dict):
            pos = end  # a JSON object that is not a call: prose, skipped whole
        else:
            failures += 1
            pos = start + 1
    return EmbeddedCalls(spans)


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
        args, problem = decode_json(args) if args.strip() else ({}, None)
        if problem is not None:
            return f"the 'arguments' string of '{name}' is not valid JSON ({problem})"
    if not isinstance(args, dict):
        return f"the 'arguments' of '{name}' must be a JSON object, got {type(args).__name__}"
    return ToolCall(name=name, arguments=args, id=call_id)


def parse_tool_calls(action: str | Mapping[str, Any], id_prefix: str = "call") -> ParsedAction:
    """Parse an assistant action into tool calls and the message to the user.

    Supported formats (in this order):

    1. An already-parsed call: a mapping ``{"name", "arguments"}``, the OpenAI call form
       ``{"type": "function", "function": {...}}``, or an OpenAI assistant message
       ``{"content": ..., "tool_calls": [...]}``.
    2. Hermes/Qwen blocks ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
       (an unterminated last block is read to the end of the text).
    3. Bare JSON: the whole text (optionally in a ```json fence) is one call object or a list
       of them, or call objects (or lists of them) anywhere in prose: before, between or
       after text, one after another on separate lines (see :func:`find_embedded_calls`).

    ``arguments`` may be a JSON object or a JSON-encoded string. ``<think>...</think>``
    blocks are dropped from ``content``. Call ids are ``f"{id_prefix}_{k}"`` unless the call
    carries its own. A text without any call is a plain message (``calls == []``).

    Bounded on hostile text: linear time in the text's length, and JSON nested deeper than
    :data:`MAX_JSON_DEPTH` is a parse error, never a RecursionError.
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

    def reject(message: str, raw: str) -> None:
        errors.append(f"Malformed tool call: {message}.")
        invalid.append((next_id(), raw[:2000]))

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
            obj, problem = decode_json(body)
            if problem is not None:
                reject(f"invalid JSON in <tool_call> block ({problem})", body)
                continue
            add(obj, body[:2000])
        content = _TOOL_CALL_BLOCK.sub("", text).strip()
        return ParsedAction(calls, content, errors, invalid)

    stripped = text.strip()
    whole = _strip_json_fence(stripped)
    whole_problem: str | None = None
    if whole[:1] in ("{", "["):
        obj, whole_problem = decode_json(whole)
        if whole_problem == _TOO_DEEP:
            reject(f"invalid JSON ({whole_problem})", whole)
            return ParsedAction(calls, "", errors, invalid)
        objs = obj if isinstance(obj, list) else [obj]
        if whole_problem is None and objs and all(_looks_like_call(o) or (isinstance(o, dict) and "name" in o)
                                                  for o in objs):
            for o in objs:
                add(o, json.dumps(o, default=str)[:2000])
            return ParsedAction(calls, "", errors, invalid)

    found = find_embedded_calls(text)
    pieces: list[str] = []
    pos = 0
    for start, end, objs in found.spans:
        pieces.append(text[pos:start])
        for o in objs:
            add(o, json.dumps(o, default=str)[:2000])
        pos = end
    if found.too_deep_at is not None:
        pieces.append(text[pos:found.too_deep_at])
        reject(f"invalid JSON ({_TOO_DEEP} at char {found.too_deep_at})",
               text[found.too_deep_at:])
        return ParsedAction(calls, "".join(pieces).strip(), errors, invalid)
    if not found.spans and whole_problem is not None and '"name"' in whole:
        reject(f"invalid JSON ({whole_problem})", whole)  # a call-looking text that does not decode
        return ParsedAction(calls, "", errors, invalid)
    if not found.spans:
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

    A simulator may also declare ``error_types``: the exceptions its ``reset``/``respond`` raise
    when the simulator itself fails (e.g. the LLM user's server is down after its retries). The
    env ends that episode as ``user_error`` (reward 0, the reason in ``info["user_error"]``)
    instead of letting them propagate. Everything else a simulator raises propagates.
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
        self._user_failure: str | None = None
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
        self._user_failure = None
        try:
            first = self.user.reset(self._task, seed=user_seed)
        except self._user_error_types() as err:
            first, self._user_failure = "", _one_line(err)
        if not isinstance(first, str):
            raise TypeError(f"{type(self.user).__name__}.reset must return str, got {type(first).__name__}")
        self._messages = []
        self._calls = []
        self._turns = self._tokens = self._errors = self._write_calls = 0
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
                        user_simulator=self.user.name)
            if reason == USER_ERROR:
                info[USER_ERROR] = self._user_failure
        return self._observation(), reward, termination is not None, truncation is not None, info

    def _play(self, action: str | Mapping[str, Any]) -> str | None:
        """Record the agent's action, run its calls or get the user's reply; the termination
        reason it causes, if any."""
        parsed = parse_tool_calls(action, id_prefix=f"call_{self._turns}")
        tool_calls = [c.to_openai() for c in parsed.calls] + [
            {"id": cid, "type": "function", "function": {"name": INVALID_CALL_NAME, "arguments": raw}}
            for cid, raw in parsed.invalid
        ]
        assistant: dict[str, Any] = {"role": "assistant", "content": parsed.content}
        if tool_calls:
            assistant["tool_calls"] = tool_calls
        self._append(assistant)
        if tool_calls:
            for (cid, _raw), err in zip(parsed.invalid, parsed.errors):
                if self._budget_spent():
                    break
                self._tool_message(cid, INVALID_CALL_NAME, "Error: " + err, error=True)
            for call in parsed.calls:
                if self._budget_spent():
                    break
                self._execute(call)
            return "too_many_errors" if self._errors >= self.max_errors else None
        if AGENT_STOP_TOKEN in parsed.content:
            return "agent_stop"
        try:
            reply = self.user.respond(self._observation())
        except self._user_error_types() as err:
            self._user_failure = _one_line(err)
            return USER_ERROR
        if not isinstance(reply, str):
            raise TypeError(f"{type(self.user).__name__}.respond must return str, got {type(reply).__name__}")
        self._append({"role": "user", "content": reply})
        return "user_stop" if any(tok in reply for tok in USER_STOP_TOKENS) else None

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
        """The conversation so far (a copy)."""
        return self._observation()

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Every schema-valid call to a known tool this episode, in order (errors included)."""
        return list(self._calls)

    def _observation(self) -> list[dict[str, Any]]:
        return [_copy_message(m) for m in self._messages]

    def _append(self, message: dict[str, Any]) -> None:
        message = _clean_message(message)
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
