"""The shared suite, parametrized over every registered sgcd env: Gymnasium's check_env,
same-seed determinism, a malformed-action fuzz that never raises and never changes state, and
the hostile model output that once crashed or hung an env (issue 18): deep nesting, a megabyte
of braces, huge calculator expressions as any string argument, lone surrogates, several bare
calls with text.

A new env gets these tests by registering; an env may expose ``state_fingerprint()`` for the
fuzz's no-state-change check (otherwise only the no-raise part applies).
"""

from __future__ import annotations

import json
import random
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sgcd_envs

IDS = [
    pytest.param(env_id, marks=pytest.mark.skip(reason=f"needs {sgcd_envs.ENVS[env_id].requires}"))
    if sgcd_envs.ENVS[env_id].requires else env_id
    for env_id in sgcd_envs.env_ids()
]


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id):
    env = gym.make(env_id).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning fails the test
        check_env(env, skip_render_check=True)


def _rollout(env_id: str, seed: int, actions: list) -> list:
    env = gym.make(env_id).unwrapped
    out = [env.reset(seed=seed)]
    for a in actions:
        step = env.step(a)
        out.append(step)
        if step[2] or step[3]:
            break
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_rollout(env_id):
    env = gym.make(env_id).unwrapped
    env.action_space.seed(5)
    actions = [env.action_space.sample() for _ in range(12)] + ["Thanks! Is there anything else?"]
    a, b = _rollout(env_id, 11, actions), _rollout(env_id, 11, actions)
    assert json.dumps(a, default=str, sort_keys=True) == json.dumps(b, default=str, sort_keys=True)


HOSTILE_STRINGS = (
    "(((10**100)**100)**100)**100",  # nested powers: once never returned
    "+".join(["1"] * 5000),  # once RecursionError
    "[" * 1000,
    "\ud800",  # a lone surrogate: json.dumps writes the escape "\ud800"
    "(-8)**0.5",  # a complex result: once TypeError
)
"""String arguments that once hung or crashed a tool (τ³'s calculate)."""


def _hostile(rng: random.Random, name: str) -> str:
    """One cheap hostile action for the fuzz (the megabyte cases are in test_hostile_actions)."""
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice("[{") * rng.randrange(65, 3000)
    if kind == 1:
        return json.dumps({"name": name, "arguments": {"expression": rng.choice(HOSTILE_STRINGS)}})
    if kind == 2:
        return '{"name": "%s", "arguments": {"user_id": "\\ud800"}}\nDone.' % name
    if kind == 3:
        return "<tool_call>" + '{"name": "%s", "arguments": ' % name + "[" * rng.randrange(65, 3000)
    return "\n".join(json.dumps({"name": name, "arguments": {"reservation_id": "\udfff"}}) for _ in range(3))


def _malformed(rng: random.Random, tools: list[str]) -> str | dict:
    name = rng.choice(tools + ["no_such_tool", "", "get_user_detail"])
    junk = rng.choice([1, -1.5, None, True, "x", [], {}, {"a": 1}, "9" * 50, "\u00e9\u4e2d"])
    kind = rng.randrange(10)
    if kind == 9:
        return _hostile(rng, name)
    if kind == 0:
        return "<tool_call>" + rng.choice(['{"name": ', '{bad', "[1,2]", '{"name": 3}', ""]) + rng.choice(["</tool_call>", ""])
    if kind == 1:
        return {"name": name, "arguments": {rng.choice(["user_id", "reservation_id", "zz", "amount"]): junk}}
    if kind == 2:
        return '<tool_call>{"name": "%s", "arguments": "{\\"broken"}</tool_call>' % name
    if kind == 3:
        return {"name": name, "arguments": junk}
    if kind == 4:
        return json.dumps({"name": name, "arguments": {"expression": rng.choice(["1/0", "9**9**9", "()", "(1)(2)", "...", "2**-1"])}})
    if kind == 5:
        return {"tool_calls": junk}
    if kind == 6:
        return "<tool_call>" + json.dumps({"name": name, "arguments": {"reservation_id": junk, "extra": junk}}) + "</tool_call>"
    if kind == 7:
        return {"function": {"name": name, "arguments": "{]"}}
    return '{"name": "%s", "arguments": {"passengers": [%s]}}' % (name, json.dumps(junk))


@pytest.mark.parametrize("env_id", IDS)
def test_malformed_action_fuzz(env_id):
    env = gym.make(env_id).unwrapped
    rng = random.Random(0)
    tools = list(env.tools)
    env.reset(seed=0)
    fingerprint = getattr(env, "state_fingerprint", None)
    start = fingerprint() if fingerprint else None
    episodes = errors = 0
    n = 1200
    for i in range(n):
        obs, ended, start = _step_changing_nothing(env, _malformed(rng, tools), f"malformed action #{i}", i,
                                                   fingerprint, start)
        assert obs[-1]["role"] in ("tool", "user")
        errors += obs[-1]["role"] == "tool" and obs[-1]["content"].startswith("Error:")
        episodes += ended
    assert episodes >= 1 and errors > 0.8 * n


def _step_changing_nothing(env, action, label: str, seed: int, fingerprint, start):
    """Step an action that must change nothing: the observation is in the space and UTF-8 clean,
    the state fingerprint is unchanged, and an episode end scores 0 and is reset with ``seed``.
    Returns ``(obs, ended, the fingerprint to compare with next)``."""
    obs, reward, terminated, truncated, _ = env.step(action)
    assert obs in env.observation_space
    _utf8(obs)
    if fingerprint:
        assert fingerprint() == start, f"state changed by {label}"
    if not (terminated or truncated):
        return obs, False, start
    assert reward == 0.0
    env.reset(seed=seed)
    return obs, True, fingerprint() if fingerprint else None


def _utf8(obs: list[dict]) -> None:
    """Fails on a lone surrogate anywhere in the observation (tokenizers raise TypeError on them)."""
    json.dumps(obs, ensure_ascii=False).encode("utf-8")


def _hostile_actions(env) -> list[str]:
    """The issue-18 actions for ``env``: env-independent text, plus every tool called with each
    of :data:`HOSTILE_STRINGS` in all of its string parameters."""
    actions = ["[" * 1000, "{" * 1_000_000, '{"' * 500_000, "x " + '{"a"}' * 200_000, "\ud800",
               '<tool_call>{"name": "x", "arguments": ' + "[" * 1000 + "</tool_call>",
               '{"name": "x", "arguments": {}}\nand some text', '{"name": "x", "arguments": {}}\n' * 3]
    for name, spec in env.tools.items():
        props = spec.parameters.get("properties", {})
        strings = [k for k, v in props.items() if v.get("type") == "string"]
        actions += [json.dumps({"name": name, "arguments": {k: text for k in strings}}) for text in HOSTILE_STRINGS]
    return actions


@pytest.mark.parametrize("env_id", IDS)
def test_hostile_actions_never_raise_hang_or_change_state(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    fingerprint = getattr(env, "state_fingerprint", None)
    start = fingerprint() if fingerprint else None
    for i, action in enumerate(_hostile_actions(env)):
        _, _, start = _step_changing_nothing(env, action, f"hostile action #{i}", i, fingerprint, start)
