"""Tool-call parsing: one call type (:class:`ToolCall`) and one parser for every supported call
format (:func:`parse_tool_calls`): already-parsed mappings, Hermes/Qwen ``<tool_call>`` blocks and
bare JSON (whole, fenced or embedded in prose).

Hostile text is bounded: JSON is measured by an iterative, depth-limited scan
(:func:`json_extent`, :data:`MAX_JSON_DEPTH`) before anything is decoded, prose costs linear time
(:data:`MAX_FAILED_CANDIDATES`), and :func:`replace_lone_surrogates` makes any text UTF-8-safe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_FAILED_CANDIDATES",
    "MAX_JSON_DEPTH",
    "EmbeddedCalls",
    "ParsedAction",
    "ToolCall",
    "decode_json",
    "find_embedded_calls",
    "json_extent",
    "parse_tool_calls",
    "replace_lone_surrogates",
]


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

    def to_hermes(self) -> str:
        """The call as a policy writes it: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""
        return f"<tool_call>{json.dumps({'name': self.name, 'arguments': self.arguments})}</tool_call>"


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
