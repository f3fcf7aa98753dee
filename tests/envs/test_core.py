"""sgcd_envs.core: parsing, argument validation, schemas, registry errors."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import sgcd_envs
from sgcd_envs.core import parsing
from sgcd_envs.core import (
    MAX_JSON_DEPTH, ToolCall, function_schema, parse_tool_calls, replace_lone_surrogates, validate_arguments,
)


def test_hermes_qwen_blocks_with_text_and_think():
    text = ('<think>{"name": "x", "arguments": {}}</think>Let me look.\n'
            '<tool_call>\n{"name": "get_user_details", "arguments": {"user_id": "a_1"}}\n</tool_call>\n'
            '<tool_call>{"name": "list_all_airports", "arguments": {}}</tool_call>')
    p = parse_tool_calls(text, id_prefix="t")
    assert p.calls == [ToolCall("get_user_details", {"user_id": "a_1"}, "t_0"), ToolCall("list_all_airports", {}, "t_1")]
    assert p.content == "Let me look." and p.errors == []


@pytest.mark.parametrize("text", [
    '{"name": "f", "arguments": {"a": 1}}',
    '{"name": "f", "arguments": "{\\"a\\": 1}"}',
    '```json\n{"name": "f", "parameters": {"a": 1}}\n```',
    '{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\": 1}"}}',
])
def test_bare_json_forms(text):
    p = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in p.calls] == [("f", {"a": 1})] and p.errors == []


def test_call_embedded_in_prose_and_list_of_calls():
    p = parse_tool_calls('Checking now {"name": "f", "arguments": {}} thanks')
    assert [c.name for c in p.calls] == ["f"] and p.content == "Checking now  thanks"
    p = parse_tool_calls('[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"x": 2}}]')
    assert [c.name for c in p.calls] == ["f", "g"]


def test_parsed_dicts_and_openai_assistant_message():
    assert parse_tool_calls({"name": "f", "arguments": {"a": 1}}).calls[0].arguments == {"a": 1}
    msg = {"role": "assistant", "content": "ok", "tool_calls": [
        {"id": "abc", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    p = parse_tool_calls(msg)
    assert p.calls == [ToolCall("f", {}, "abc")] and p.content == "ok"


def test_plain_text_and_json_that_is_not_a_call():
    assert parse_tool_calls("Hello, how can I help?").calls == []
    p = parse_tool_calls('The data is {"a": 1}.')
    assert p.calls == [] and p.content == 'The data is {"a": 1}.'


@pytest.mark.parametrize("text,needle", [
    ("<tool_call>{bad json</tool_call>", "invalid JSON"),
    ("<tool_call>[1, 2]</tool_call>", "must be a JSON object"),
    ('<tool_call>{"arguments": {}}</tool_call>', "non-empty string 'name'"),
    ('<tool_call>{"name": "f", "arguments": "{oops"}</tool_call>', "not valid JSON"),
    ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "must be a JSON object"),
    ('{"name": "f", "arguments": {', "invalid JSON"),
])
def test_malformed_calls_are_reported(text, needle):
    p = parse_tool_calls(text)
    assert p.calls == [] and len(p.errors) == 1 and needle in p.errors[0] and len(p.invalid) == 1


def test_parse_rejects_non_text_actions():
    with pytest.raises(TypeError, match="action must be a str"):
        parse_tool_calls(42)  # type: ignore[arg-type]


def test_validate_arguments_messages():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "c": {"enum": ["a", "b"], "type": "string"},
              "xs": {"type": "array", "items": {"type": "object", "properties": {"d": {"type": "string"}}, "required": ["d"]}}},
              "required": ["n"], "additionalProperties": False}
    assert validate_arguments(schema, {"n": 1, "c": "a", "xs": [{"d": "x"}]}) == []
    assert "missing required field 'n'" in validate_arguments(schema, {})[0]
    assert "unexpected field 'm'" in validate_arguments(schema, {"n": 1, "m": 2})[0]
    assert "expected integer, got float" in validate_arguments(schema, {"n": 1.0})[0]
    assert "expected integer, got bool" in validate_arguments(schema, {"n": True})[0]
    assert "is not one of" in validate_arguments(schema, {"n": 1, "c": "z"})[0]
    assert "arguments.xs[0]: missing required field 'd'" in validate_arguments(schema, {"n": 1, "xs": [{}]})[0]


def test_function_schema_from_signature_and_docstring():
    def f(a: int, b: list[str], c: str = "x") -> str:
        """Do a thing.

        Args:
            a: The first
                argument.
            b: Names.

        Returns:
            Text.
        """
        return ""

    s = function_schema(f)["function"]
    assert s["name"] == "f" and s["description"] == "Do a thing."
    assert s["parameters"]["required"] == ["a", "b"] and s["parameters"]["additionalProperties"] is False
    assert s["parameters"]["properties"]["a"] == {"type": "integer", "description": "The first argument."}
    assert s["parameters"]["properties"]["b"]["items"] == {"type": "string"}
    json.dumps(s)


def test_registry_lists_ids_and_suggests_on_typo():
    assert "sgcd_envs/Tau3Airline-v0" in sgcd_envs.env_ids()
    with pytest.raises(sgcd_envs.UnknownEnvError, match="Did you mean 'sgcd_envs/Tau3Airline-v0'"):
        sgcd_envs.make("sgcd_envs/Tau3Airlin-v0")
    assert isinstance(gym.make("sgcd_envs/Tau3Airline-v0").unwrapped, sgcd_envs.ToolUseEnv)


def test_sgcd_envs_imports_no_ml_or_llm_packages():
    import subprocess
    import sys

    code = ("import sys, gymnasium as gym, sgcd_envs; env = gym.make('sgcd_envs/Tau3Airline-v0'); env.reset(seed=0); "
            "bad = [m for m in ('torch', 'transformers', 'openai', 'numpy.distutils') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# ---------------------------------------------------------------- hostile text (issue 18, item 3)


@pytest.mark.parametrize("text", [
    "[" * 1000,
    "{" * 1000,
    '```json\n' + "[" * 1000 + '\n```',
    '<tool_call>{"name": "f", "arguments": ' + "[" * 1000 + "</tool_call>",
    '{"name": "f", "arguments": "' + "[" * 1000 + '"}',  # arguments as a JSON string
    'Let me see {"a": ' + "[" * 1000,
], ids=["brackets", "braces", "fenced", "hermes", "arguments-string", "in-prose"])
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(text):
    p = parse_tool_calls(text)
    assert p.calls == [] and len(p.errors) == 1 and f"nested deeper than {MAX_JSON_DEPTH} levels" in p.errors[0]
    assert len(p.invalid) == 1 and len(p.invalid[0][1]) <= 2000  # the raw text is kept cut, not whole
    assert "[" * 100 not in p.content


def test_nesting_up_to_the_limit_still_parses():
    deep = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    p = parse_tool_calls('{"name": "f", "arguments": {"x": %s}}' % deep)
    assert p.errors == [] and p.calls[0].arguments["x"] == json.loads(deep)


def _limit_calls(monkeypatch, owner, name: str, limit: int) -> list[int]:
    """Wrap ``owner.name`` to record each call and fail the test on call ``limit + 1`` (so an
    unbounded parser fails at once instead of running for minutes)."""
    seen: list[int] = []
    real = getattr(owner, name)

    def limited(*args, **kwargs):
        seen.append(1)
        assert len(seen) <= limit, f"{name} called more than {limit} times"
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, limited)
    return seen


@pytest.mark.parametrize("text, max_scans, max_decodes", [
    ("{" * 1_000_000, 1, 0),  # used to take minutes: one failed raw_decode per '{', each O(position)
    ('{"' * 500_000, 1, 0),
    ("x" + '{"a"}' * 200_000, parsing.MAX_FAILED_CANDIDATES, parsing.MAX_FAILED_CANDIDATES),
    ("x" + "{" * 1_000_000, 0, 0),
], ids=["braces", "open-keys", "failed-candidates", "prose-braces"])
def test_parsing_a_megabyte_does_bounded_work(monkeypatch, text, max_scans, max_decodes):
    _limit_calls(monkeypatch, parsing, "json_extent", max_scans)  # one O(span) scan per candidate
    _limit_calls(monkeypatch, json.JSONDecoder, "raw_decode", max_decodes)  # json.loads included
    assert parse_tool_calls(text).calls == []


F_AND_G = [("f", {}, "t_0"), ("g", {"x": 2}, "t_1")]


@pytest.mark.parametrize("text, calls, content", [
    ('{"name": "f", "arguments": {}}\nLet me check that for you.', F_AND_G[:1], "Let me check that for you."),
    ('{"name": "f", "arguments": {}}\n{"name": "g", "arguments": {"x": 2}}', F_AND_G, ""),
    ('{"name": "f", "arguments": {}}\n\n{"name": "g", "arguments": {"x": 2}}\nDone.', F_AND_G, "Done."),
    ('[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"x": 2}}] and that is all', F_AND_G,
     "and that is all"),
    ('I will call two tools.\n{"name": "f", "arguments": {}} then {"name": "g", "arguments": {"x": 2}}', F_AND_G,
     "I will call two tools.\n then"),
], ids=["call-then-text", "two-lines", "two-then-text", "list-then-text", "text-between"])
def test_bare_calls_with_text_or_on_separate_lines_parse_like_hermes(text, calls, content):
    p = parse_tool_calls(text, id_prefix="t")
    assert [(c.name, c.arguments, c.id) for c in p.calls] == calls
    assert p.errors == [] and p.content == content


def test_replace_lone_surrogates():
    assert replace_lone_surrogates("ok \ud800 \udfff é 中 😀") == "ok \ufffd \ufffd é 中 😀"
    assert replace_lone_surrogates("plain") == "plain"
    replace_lone_surrogates(json.loads('"\\ud83d x \\ude00"')).encode("utf-8")  # unpaired halves
