"""The shared suite, parametrized over every registered sgcd env: Gymnasium's check_env,
same-seed determinism, a malformed-action fuzz that never raises and never changes state, and
the hostile model output that once crashed or hung an env (issue 18): deep nesting, a megabyte
of braces, huge calculator expressions as any string argument, lone surrogates, several bare
calls with text. And what each env declares in its registration is what it does: ``takes_user``,
``turn_budget``, ``task_categories``, ``write_tools``, ``reference_turns`` and the reset info the
runs read (``task_id``, ``policy``, ``tools``).

A new env gets these tests by registering (an installed plugin's too); an env may expose
``state_fingerprint()`` for the fuzz's no-state-change check (otherwise only the no-raise part applies).
"""

from __future__ import annotations

import inspect
import json
import random
import warnings
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sgcd_envs
from sgcd_common import load_entry_point
from sgcd_envs.core import AGENT_STOP_TOKEN, UserSimulator, parse_tool_calls
from sgcd_envs.outcome import episode_outcome
from sgcd_envs.registry import EnvEntry

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


# -- what an env declares is what it does --------------------------------------------------------
UNKNOWN_CALL = '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>'
"""An action that ends nothing by itself: one agent turn spent on an error observation."""

CATEGORY_SAMPLE = 48
"""How many of an env's first tasks the category check plays (one step each)."""


def _constructor_params(entry: EnvEntry) -> set[str]:
    """The parameters the env's constructor names (not those it only passes on in ``**kwargs``)."""
    parameters = inspect.signature(load_entry_point(entry.entry_point)).parameters.values()
    return {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _registered_user(entry: EnvEntry) -> Any:
    """A fresh user of the env's registration (its own or its stand-in), or None."""
    if entry.own_user is not None:
        return entry.new_own_user()
    return entry.new_stand_in_user(max_user_turns=10) if entry.stand_in_user is not None else None


def _play(env, turns: list) -> tuple[float, dict, bool]:
    """Step ``turns`` until the episode ends: ``(last reward, last info, ended)``."""
    reward, info, ended = 0.0, {}, False
    for turn in turns:
        _, reward, terminated, truncated, info = env.step(turn)
        ended = terminated or truncated
        if ended:
            break
    return reward, info, ended


@pytest.mark.parametrize("env_id", IDS)
def test_declared_user_is_what_the_constructor_takes(env_id):
    entry = sgcd_envs.ENVS[env_id]
    params = _constructor_params(entry)
    assert entry.takes_user == ("user" in params), f"takes_user={entry.takes_user}, constructor takes {sorted(params)}"
    user = _registered_user(entry)
    if user is None:
        return
    assert entry.takes_user, "a registered own_user / stand_in_user needs takes_user=True"
    assert isinstance(user, UserSimulator) and isinstance(user.name, str)
    assert gym.make(env_id, user=user).unwrapped.user is user, "the constructor ignores user="


@pytest.mark.parametrize("env_id", IDS)
def test_declared_turn_budget_bounds_the_agent_turns(env_id):
    entry = sgcd_envs.ENVS[env_id]
    if entry.turn_budget is None:
        return
    assert entry.turn_budget in _constructor_params(entry), f"turn_budget={entry.turn_budget!r} is no constructor parameter"

    def turns_played(budget: int) -> int:
        """Agent turns until the episode ends (``budget + 1``: it did not end in time)."""
        env = gym.make(env_id, **{entry.turn_budget: budget}).unwrapped
        env.reset(seed=0)
        for turn in range(1, budget + 1):
            if _play(env, [UNKNOWN_CALL])[2]:
                return turn
        return budget + 1

    assert (turns_played(1), turns_played(3)) == (1, 3), f"{entry.turn_budget}=N does not end an episode after N turns"


@pytest.mark.parametrize("env_id", IDS)
def test_declared_task_categories_are_the_ones_its_episodes_report(env_id):
    entry = sgcd_envs.ENVS[env_id]
    env = gym.make(env_id).unwrapped
    seen = set()
    for task_id in env.task_ids()[:CATEGORY_SAMPLE]:
        env.reset(seed=0, options={"task_id": task_id})
        _, info, ended = _play(env, [AGENT_STOP_TOKEN])
        assert ended, f"{AGENT_STOP_TOKEN} did not end task {task_id}'s episode"
        seen.add(episode_outcome(info).category)
    seen.discard(None)
    assert seen == set(entry.task_categories), \
        f"declared {entry.task_categories}, the first {CATEGORY_SAMPLE} tasks' final infos report {sorted(seen)}"


@pytest.mark.parametrize("env_id", IDS)
def test_declared_write_tools_are_the_tools_that_write(env_id):
    entry = sgcd_envs.ENVS[env_id]
    env = gym.make(env_id).unwrapped
    _, info = env.reset(seed=0)
    declared = entry.write_tool_names()
    assert declared <= {t["function"]["name"] for t in info["tools"]}, "write_tools names a tool the env lacks"
    assert declared == {name for name, spec in env.tools.items() if spec.writes}, \
        "write_tools (the summarizer's) differ from the tools the env counts as writes"


@pytest.mark.parametrize("env_id", IDS)
def test_reset_info_carries_what_the_runs_read(env_id):
    entry = sgcd_envs.ENVS[env_id]
    assert "split" in _constructor_params(entry), "the runs build every env with split="
    env = gym.make(env_id).unwrapped
    task_ids = env.task_ids()
    assert task_ids, "task_ids() lists no task"
    for task_id in task_ids[:3]:
        _, info = env.reset(seed=0, options={"task_id": task_id})
        assert str(info.get("task_id")) == str(task_id), "reset info's task_id is not the task asked for"
        assert isinstance(info.get("policy"), str) and info["policy"].strip(), "reset info has no policy (the system prompt)"
        assert [t["function"]["name"] for t in info.get("tools", ())] == list(env.tools), "reset info's tools are not the env's"


@pytest.mark.parametrize("env_id", IDS)
def test_declared_reference_turns_solve_their_tasks(env_id):
    """The warm start clones them: each must score 1, and its write calls are the declared ones."""
    entry = sgcd_envs.ENVS[env_id]
    if entry.reference_turns is None:
        return
    user = _registered_user(entry)
    env = gym.make(env_id, split="train", **({"user": user} if user is not None else {})).unwrapped
    for task_id in env.task_ids()[:4]:
        turns = entry.demonstration(task_id, "train")
        env.reset(seed=0, options={"task_id": task_id})
        reward, info, ended = _play(env, turns)
        assert ended and reward == 1.0, f"the reference turns of {task_id} score {reward} ({info.get('termination')})"
        writes = sum(c.name in entry.write_tool_names() for turn in turns for c in parse_tool_calls(turn).calls)
        assert info["write_calls"] == writes, f"{task_id}: the env counted {info['write_calls']} writes, write_tools {writes}"


SUITE = (test_check_env, test_same_seed_same_rollout, test_malformed_action_fuzz,
         test_hostile_actions_never_raise_hang_or_change_state, test_declared_user_is_what_the_constructor_takes,
         test_declared_turn_budget_bounds_the_agent_turns, test_declared_task_categories_are_the_ones_its_episodes_report,
         test_declared_write_tools_are_the_tools_that_write, test_reset_info_carries_what_the_runs_read,
         test_declared_reference_turns_solve_their_tasks)
"""Every check, for a test that registers its own env and runs them on it (``SUITE[i](env_id)``)."""
