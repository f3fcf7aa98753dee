"""The shared suite, parametrized over every registered sgcd env: Gymnasium's check_env,
same-seed determinism and a malformed-action fuzz that never raises and never changes state.

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


def _malformed(rng: random.Random, tools: list[str]) -> str | dict:
    name = rng.choice(tools + ["no_such_tool", "", "get_user_detail"])
    junk = rng.choice([1, -1.5, None, True, "x", [], {}, {"a": 1}, "9" * 50, "\u00e9\u4e2d"])
    kind = rng.randrange(9)
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
        obs, reward, terminated, truncated, info = env.step(_malformed(rng, tools))
        assert obs in env.observation_space
        assert obs[-1]["role"] in ("tool", "user")
        errors += obs[-1]["role"] == "tool" and obs[-1]["content"].startswith("Error:")
        if fingerprint:
            assert fingerprint() == start, f"state changed by malformed action #{i}"
        if terminated or truncated:
            assert reward == 0.0
            env.reset(seed=i)
            start = fingerprint() if fingerprint else None
            episodes += 1
    assert episodes >= 1 and errors > 0.8 * n
