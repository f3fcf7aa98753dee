"""Tiny shop (``sgcd_envs/TinyShop-v0``): the generator is pure, the reference agent scores 1, the
do-nothing and never-write agents score the documented fractions, the reward has τ's semantics,
the user follows its rules and every text stays small. The shared registry suite runs on it too
(tests/envs/test_registry_suite.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sgcd_envs
from sgcd_envs.core import USER_STOP_TOKENS
from sgcd_envs.tiny_shop import (DO_NOTHING_SCORE, KIND_CYCLE, NO_WRITE_SCORE, POLICY, TEST_SIZE, WRITE_TOOLS,
                                 ShopUser, TinyShopEnv, generate_task, get_task, reference_conversation,
                                 reference_turns)
from sgcd_envs.tiny_shop.user import CONFIRMED, USER_NAME

ROOT = Path(__file__).resolve().parents[2]
STOP = USER_STOP_TOKENS[0]
TEST_IDS = [f"test-{i}" for i in range(TEST_SIZE)]
TRAIN_SAMPLE = [f"train-{i}" for i in range(0, 100_000, 200)]  # 500 train tasks, spread out


def call(name: str, **arguments: str) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def play(task_id: str, turns: list[str]) -> tuple[TinyShopEnv, float, dict]:
    """Run ``turns`` on a fresh env until the episode ends; (env, reward, final info)."""
    env = TinyShopEnv(split=task_id.split("-")[0])
    env.reset(seed=0, options={"task_id": task_id})
    for turn in turns:
        _, reward, terminated, truncated, info = env.step(turn)
        if terminated or truncated:
            return env, reward, info
    raise AssertionError(f"episode of {task_id} did not end after {turns}")


def first_of_kind(kind: str, split: str = "test") -> str:
    return f"{split}-{KIND_CYCLE.index(kind)}"


# -- generator ------------------------------------------------------------------------------
def test_the_generator_is_pure_across_processes():
    here = [repr(generate_task(seed, i)) for seed in (0, 1, 7) for i in range(20)]
    code = ("from sgcd_envs.tiny_shop import generate_task\n"
            "for seed in (0, 1, 7):\n    for i in range(20): print(repr(generate_task(seed, i)))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.splitlines()
    assert there == here
    assert len({repr(t.world) for t in map(generate_task, [0] * 100, range(100))}) == 100


def test_splits_ids_and_the_fixed_mix():
    assert TinyShopEnv(split="test").task_ids() == TEST_IDS
    assert len(TinyShopEnv().task_ids()) == 10_000 and TinyShopEnv(train_size=7).task_ids()[-1] == "train-6"
    tests = [get_task(t) for t in TEST_IDS]
    assert [t.category for t in tests].count("action") == 25
    assert sum(t.kind.startswith("refuse") for t in tests) == 15 and sum(t.kind.startswith("ask") for t in tests) == 10
    assert {len(t.actions) for t in tests} == {1, 2, 3, 4}
    seen = {(t.world, t.request) for t in map(get_task, (f"train-{i}" for i in range(10_000)))}
    assert not seen & {(t.world, t.request) for t in tests}  # test and train come from other seeds
    env = TinyShopEnv()
    _, info = env.reset(seed=0, options={"task_id": "train-123456789"})  # any train index, not only the listed ones
    assert info["task_id"] == "train-123456789" and info["split"] == "train"
    for bad in ("test-50", "train-007", "train", "x-1"):
        with pytest.raises(ValueError, match="Unknown tiny-shop task id"):
            env.reset(options={"task_id": bad})
    with pytest.raises(ValueError, match="not in split 'train'"):
        env.reset(options={"task_id": "test-3"})
    with pytest.raises(ValueError, match="Did you mean 'test'"):
        TinyShopEnv(split="tset")


# -- reference, do-nothing and never-write agents -----------------------------------------------
def test_the_reference_agent_scores_1_on_every_test_task_and_500_train_tasks():
    for task_id in TEST_IDS + TRAIN_SAMPLE:
        messages = reference_conversation(task_id)  # raises unless the episode scored 1
        task = get_task(task_id)
        assert messages[0] == {"role": "user", "content": task.request}
        assert [m["role"] for m in messages] == ["user"] + ["assistant", "tool"] * len(task.actions) + ["assistant"]
        assert task.reply in messages[-1]["content"] and "tool_calls" not in messages[-1]
        calls = [m["tool_calls"][0]["function"] for m in messages if m.get("tool_calls")]
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [(a.name, a.arguments) for a in task.actions]
        assert not any(m["content"].startswith("Error:") for m in messages if m["role"] == "tool")
    assert sgcd_envs.env_entry("tiny-shop").demonstration("test-5", "test") == reference_turns("test-5")


def scores(ids: list[str], turns_of) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"action": [], "no_write": []}
    for task_id in ids:
        _, reward, info = play(task_id, turns_of(task_id))
        out[info["category"]].append(reward)
    return out


def test_the_do_nothing_agent_scores_exactly_the_documented_fraction():
    from sgcd_bench.run import DO_NOTHING_MESSAGE  # what the baseline row's agent says

    assert DO_NOTHING_SCORE == 0.3
    for ids in (TEST_IDS, [f"train-{i}" for i in range(100)]):
        got = scores(ids, lambda _: [DO_NOTHING_MESSAGE])
        assert sum(got["action"]) == 0 and sum(got["no_write"]) / len(ids) == DO_NOTHING_SCORE


def test_an_agent_that_never_writes_keeps_the_no_write_tasks_and_loses_every_action_task():
    def without_writes(task_id: str) -> list[str]:
        turns = reference_turns(task_id)
        return [t for t in turns[:-1] if not any(f'"{w}"' in t for w in WRITE_TOOLS)] + turns[-1:]

    got = scores(TEST_IDS, without_writes)
    assert got["action"] == [0.0] * 25 and got["no_write"] == [1.0] * 25
    assert NO_WRITE_SCORE == 0.5


# -- reward semantics -----------------------------------------------------------------------------
def test_a_wrong_write_scores_0():
    task = get_task(first_of_kind("cancel"))
    target = task.actions[-1].arguments["order_id"]
    other = next(o.id for o in task.world if o.id != target)
    env, reward, info = play(task.id, [call("cancel_order", order_id=other), "Done. ###STOP###"])
    assert reward == 0.0 and info["db_match"] is False and info["write_calls"] == 1


def test_writing_on_a_refusal_task_breaks_the_state():
    task = get_task(first_of_kind("refuse_cancel"))
    oid = task.actions[0].arguments["order_id"]
    env, reward, info = play(task.id, [call("cancel_order", order_id=oid), "Done. ###STOP###"])
    assert env.orders[oid].status == "cancelled"  # the tool does what the policy forbids
    assert reward == 0.0 and info["category"] == "no_write" and info["write_calls"] == 1


def test_a_missing_communicate_string_scores_0():
    task = get_task(first_of_kind("ask_status"))
    _, reward, info = play(task.id, [*reference_turns(task.id)[:-1], "I looked it up. ###STOP###"])
    assert reward == 0.0 and info["db_match"] is True and info["communicate_match"] is False
    shouted = f"It is {task.communicate_info[0].upper()}. ###STOP###"
    _, reward, _ = play(task.id, [*reference_turns(task.id)[:-1], shouted])
    assert reward == 1.0  # case-insensitive


def test_a_refused_write_changes_nothing_and_is_counted():
    task = get_task(first_of_kind("refuse_move"))
    oid = task.actions[0].arguments["order_id"]
    env = TinyShopEnv(split="test")
    env.reset(seed=0, options={"task_id": task.id})
    before = env.state_fingerprint()
    for refused in (call("change_city", order_id=oid, city="Paris"), call("cancel_order", order_id="o100")):
        obs, *_ = env.step(refused)
        assert obs[-1]["content"].startswith("Error:") and env.state_fingerprint() == before
    _, reward, _, _, info = env.step("Sorry, it cannot be changed. ###STOP###")
    assert reward == 1.0 and info["write_calls"] == 2 and info["tool_errors"] == 2


def test_cancelled_orders_and_unchanged_cities_are_refused():
    task = get_task(first_of_kind("move"))
    oid, city = task.actions[-1].arguments["order_id"], task.actions[-1].arguments["city"]
    env = TinyShopEnv(split="test")
    env.reset(seed=0, options={"task_id": task.id})
    assert not env.step(call("change_city", order_id=oid, city=city.lower()))[0][-1]["content"].startswith("Error:")
    assert env.orders[oid].city == city  # the city's case is the shop's
    assert "already goes to" in env.step(call("change_city", order_id=oid, city=city))[0][-1]["content"]
    env.step(call("cancel_order", order_id=oid))
    assert "is cancelled" in env.step(call("cancel_order", order_id=oid))[0][-1]["content"]


# -- the user ------------------------------------------------------------------------------------------
def test_the_user_states_the_ids_answers_questions_and_stops_at_the_first_answer():
    task = get_task(first_of_kind("cancel_mine"))
    user = ShopUser(max_user_turns=3)
    first = user.reset(task)
    assert first == task.request and task.actions[0].arguments["user_id"] in first

    def say(text: str) -> str:
        return user.respond([{"role": "user", "content": first}, {"role": "assistant", "content": text}])

    assert say("Which user id is yours?") == task.facts == f"My user id is {task.actions[0].arguments['user_id']}."
    assert say("Shall I cancel it?") == CONFIRMED
    assert say("Is there anything else I can help you with?") == STOP  # a closing phrase
    user.reset(task)
    oid = task.actions[-1].arguments["order_id"]
    assert say("Let me check.") == task.facts  # no answer yet
    assert say(f"Your order {oid.upper()} is cancelled.") == STOP  # an answer naming an id of the task
    user.reset(task)
    assert [say(text) for text in ("", "  ", "", "")] == [task.request] * 4  # no answer, and not counted
    assert say("Which order?") == task.facts
    user.reset(task)
    assert [say("Which order?") for _ in range(4)] == [task.facts] * 3 + [STOP]  # max_user_turns


def test_the_user_is_the_envs_own_and_no_stand_in():
    entry = sgcd_envs.env_entry("tiny-shop")
    assert entry.stand_in_user is None
    user = entry.new_own_user()
    assert isinstance(user, ShopUser) and user.max_user_turns == ShopUser().max_user_turns and user.name == USER_NAME
    _, info = TinyShopEnv().reset(seed=0)
    assert info["user_simulator"] == USER_NAME
    with pytest.raises(ValueError, match="one user per env"):
        sgcd_envs.register_env("sgcd_envs/Both-v0", entry_point="x:y", takes_user=True, own_user=ShopUser,
                               stand_in_user=ShopUser)


def test_the_registration():
    entry = sgcd_envs.env_entry("tiny-shop")
    assert entry.id == "sgcd_envs/TinyShop-v0" and entry.display_title == "Tiny shop" and entry.requires is None
    assert entry.write_tool_names() == WRITE_TOOLS == {"cancel_order", "change_city"}
    assert entry.task_categories == ("action", "no_write") and entry.takes_user and entry.turn_budget == "max_turns"
    env = sgcd_envs.make(entry.id, split="test", max_turns=3).unwrapped
    assert isinstance(env, TinyShopEnv) and env.max_turns == 3
    assert {s.name for s in env.tools.values() if s.writes} == WRITE_TOOLS


# -- sizes -------------------------------------------------------------------------------------------
def test_every_text_is_small(tokenizer):
    assert len(POLICY) <= 400
    longest_result, longest_call = 0, 0
    for task_id in TEST_IDS + TRAIN_SAMPLE:
        task = get_task(task_id)
        assert 1 <= len(task.actions) <= 4
        env = TinyShopEnv(split=task.split)
        env.reset(seed=0, options={"task_id": task_id})
        probes = [call("find_orders", user_id=u) for u in {o.user for o in task.world}]
        probes += [call("get_order", order_id=o.id) for o in task.world]
        obs, *_ = env.step("".join(probes))
        results = [m["content"] for m in obs if m["role"] == "tool"]
        results += [m["content"] for m in reference_conversation(task) if m["role"] == "tool"]
        assert not any(r.startswith("Error:") for r in results)
        longest_result = max(longest_result, *map(len, results))
        tokens = [len(tokenizer(a.to_hermes(), add_special_tokens=False)["input_ids"]) for a in task.actions]
        longest_call = max(longest_call, *tokens)
    assert longest_result < 120
    assert longest_call <= 40


# -- the run wiring ------------------------------------------------------------------------------------
def wired_user():
    """The run wiring's user for tiny shop."""
    from sgcd_bench.presets import get_preset
    from sgcd_bench.run import user_setup

    return user_setup(sgcd_envs.env_entry("tiny-shop"), get_preset("cpu"), None)


def test_the_run_wiring_uses_the_envs_own_user():
    setup = wired_user()
    assert setup.label == USER_NAME and not setup.stand_in
    assert isinstance(setup.new_user(), ShopUser)


def test_eval_runs_on_tiny_shop(converted_model_dir, tmp_path):
    from tests.cli.helpers import invoke

    wired_user()
    result = invoke("eval", "--env", "tiny-shop", "--model", str(converted_model_dir), "--out", str(tmp_path / "runs"),
                    "--max-turns", "1", "--max-new-tokens", "3", "--eval-tasks", "4")
    assert result.exit_code == 0, result.output
    assert "Tiny shop leaderboard (sgcd_envs/TinyShop-v0)" in result.output
    assert f"{USER_NAME}, an offline stand-in" not in result.output
