"""sgcd_envs.core: parsing, argument validation, schemas, registry errors."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import sgcd_envs
from sgcd_envs.core import ToolCall, function_schema, parse_tool_calls, validate_arguments


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
