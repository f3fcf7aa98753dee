"""Tool schemas and argument checks: :class:`ToolSpec`, OpenAI function schemas from Python
signatures (:func:`function_schema`) and a tiny JSON-Schema validator for tool arguments
(:func:`validate_arguments`), whose problems become the agent's error observations.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sgcd_common import did_you_mean

__all__ = ["ToolSpec", "function_schema", "validate_arguments"]


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
