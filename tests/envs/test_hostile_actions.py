"""Hostile model output through the real τ³ env (issue 18, item 3): each case is an ``Error:``
observation (or the calls it holds), never an exception, a hang or a changed state."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import sgcd_envs  # noqa: F401  (registers the ids)
from sgcd_envs.core import MAX_JSON_DEPTH
from sgcd_envs.tau3_airline.tools import MAX_CALC_BITS, MAX_CALC_CHARS, MAX_CALC_OPERATORS


def fresh_env():
    env = gym.make("sgcd_envs/Tau3Airline-v0").unwrapped
    env.reset(seed=0, options={"task_id": "0"})
    return env


def calc(expression: str) -> str:
    """A bare JSON call of τ³'s ``calculate``."""
    return json.dumps({"name": "calculate", "arguments": {"expression": expression}})


def utf8(obs: list[dict]) -> bytes:
    """The observation as UTF-8 (raises on a lone surrogate, as tokenizers do)."""
    return json.dumps(obs, ensure_ascii=False).encode("utf-8")


DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"


@pytest.mark.parametrize("action, needle", [
    ("[" * 1000, DEEP),  # was RecursionError
    ("{" * 1_000_000, DEEP),  # was 456 s in one step (quadratic parser)
    ('<tool_call>{"name": "calculate", "arguments": ' + "[" * 1000 + "</tool_call>", DEEP),
    ('{"name": "calculate", "arguments": "' + "[" * 1000 + '"}', DEEP),
    ('Let me see: {"name": "calculate", "arguments": ' + "[" * 1000, DEEP),
    (calc("(((10**100)**100)**100)**100"), f"would exceed {MAX_CALC_BITS} bits"),  # never returned
    (calc("+".join(["1"] * 5000)), f"at most {MAX_CALC_CHARS} characters, got 9999"),  # was RecursionError
    (calc("+".join(["1"] * 400)), f"at most {MAX_CALC_OPERATORS} operators, got 399"),
    (calc("-" * 999 + "1"), f"at most {MAX_CALC_OPERATORS} operators"),
    (calc("1" * (MAX_CALC_CHARS + 1)), f"at most {MAX_CALC_CHARS} characters"),
    (calc("(-8)**0.5 + 1"), "not a real number"),  # was TypeError (float() of a complex)
], ids=["brackets", "megabyte-of-braces", "hermes-deep", "arguments-string-deep", "prose-deep",
        "nested-powers", "5000-terms", "400-terms", "999-minus", "long-expression", "complex"])
def test_hostile_action_is_an_error_observation(action, needle):
    env = fresh_env()
    obs, reward, terminated, truncated, info = env.step(action)
    last = obs[-1]
    assert last["role"] == "tool" and last["content"].startswith("Error:") and needle in last["content"], last
    assert not (terminated or truncated) and reward == 0.0
    assert env.state_fingerprint() == frozenset()
    assert obs in env.observation_space
    assert len(utf8(obs)) < 20_000  # the hostile text is not echoed back whole


def test_calculate_still_computes_within_the_bounds():
    env = fresh_env()
    for expression, result in [("(1200 - 350) * 0.9", "765.0"), ("(2**100)**40 / (2**100)**40", "1.0"),
                               ("3 // 2 - -4", "5.0"), ("+".join(["1"] * (MAX_CALC_OPERATORS + 1)), "65.0")]:
        obs, *_ = env.step(calc(expression))
        assert obs[-1]["content"] == result, (expression, obs[-1])


def test_lone_surrogates_are_replaced_in_what_the_env_returns():
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    env = fresh_env()
    actions = [
        '{"name": "get_user_details", "arguments": {"user_id": "\\ud800"}}',  # the escape, echoed by the tool
        '<tool_call>{"name": "\\udfff", "arguments": {}}</tool_call>',  # echoed as an unknown tool's name
        "<tool_call>{\"name\": \"get_user_details\", \"arguments\": {\"user_id\": \"\ud800\"}}</tool_call>",
        "Could you spell your name? \ud800",  # a real surrogate in a message to the user
    ]
    for action in actions:
        obs, *_ = env.step(action)
        utf8(obs)
        for message in obs:
            tokenizer.encode(message["content"])  # was TypeError: TextInputSequence must be str
    assert "User \ufffd not found" in json.dumps(env.messages, ensure_ascii=False)
    assert env.state_fingerprint() == frozenset()


@pytest.mark.parametrize("action, content, results", [
    (calc("1+1") + "\nLet me compute that.", "Let me compute that.", ["2.0"]),
    (calc("1+1") + "\n" + calc("2+2"), "", ["2.0", "4.0"]),
    (calc("1+1") + "\n\n" + calc("2+2") + "\nBoth done.", "Both done.", ["2.0", "4.0"]),
], ids=["call-then-text", "two-lines", "two-then-text"])
def test_bare_calls_with_text_or_on_separate_lines_run_in_order(action, content, results):
    env = fresh_env()
    obs, reward, terminated, truncated, info = env.step(action)
    user, assistant, *tool_messages = obs
    assert assistant["role"] == "assistant" and assistant["content"] == content
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["calculate"] * len(results)
    assert [m["content"] for m in tool_messages] == results
    assert info["tool_errors"] == 0 and not (terminated or truncated)


def test_calls_stop_at_the_error_budget():
    env = fresh_env()
    many = "\n".join(json.dumps({"name": "no_such_tool", "arguments": {}}) for _ in range(5000))
    obs, reward, terminated, truncated, info = env.step(many)
    assert terminated and info["termination"] == "too_many_errors" and reward == 0.0
    assert sum(m["role"] == "tool" for m in obs) == env.max_errors and obs in env.observation_space
