"""τ²-telecom: data integrity, splits, reference replays (both requestors) and the do-nothing
baseline per split, the dual-control sync, action matching, tool schemas, base DBs untouched; the
env: reference turns through the env with the scripted stand-in user (who performs the user's
reference actions when asked), the user's tool use hidden from the agent and bounded like the
agent's, and the stand-in's rules."""

from __future__ import annotations

import json
import shutil

import pytest

from sgcd_envs.core import ToolCall
from sgcd_envs.tau2_telecom import (
    MANIFEST, USER_WRITE_TOOLS, WRITE_TOOLS, DataChecksumError, evaluate_episode, initial_state, load_tasks,
    reference_calls, run_call, tool_specs, user_tool_specs,
)
from sgcd_envs.tau2_telecom import data
from sgcd_envs.tau2_telecom.reward import action_matches
from sgcd_envs.tau2_telecom.tasks import Action, get_task

SPLIT_SIZES = {"small": 20, "train": 74, "test": 40, "base": 114, "full": 2285}
DO_NOTHING_PASSES = {"small": 0, "train": 0, "test": 0, "base": 0, "full": 0}
"""Measured: every pinned task's initial state fails at least one of its env assertions."""


@pytest.fixture(scope="module")
def path():
    return data.data_dir()


def _base_dump(path) -> str:
    db = data.base_db(path)
    return json.dumps({"agent": db.model_dump(), "user": db.user}, sort_keys=True, default=str)


def test_manifest_matches_and_a_changed_file_is_refused(path, tmp_path):
    assert set(MANIFEST) == {"db.toml", "user_db.toml", "main_policy.md", "tech_support_manual.md", "tasks.json",
                             "split_tasks.json"}
    copy = tmp_path / "telecom"
    copy.mkdir()
    for name in MANIFEST:
        shutil.copy(path / name, copy / name)
    assert data.data_dir(copy) == copy.resolve()
    with (copy / "user_db.toml").open("a") as fh:
        fh.write("\n")
    with pytest.raises(DataChecksumError, match="user_db.toml"):
        data.data_dir(copy)


def test_base_db_shape(path):
    db = data.base_db(path)
    assert {t: len(getattr(db, t)) for t in data.TABLES} == {"plans": 5, "customers": 4, "lines": 9, "bills": 6,
                                                               "devices": 9}
    assert db.lines["L1002"]["suspension_start_date"] is None  # defaults filled as upstream's model_dump
    assert db.user["device"]["vpn_details"] is None and db.user["surroundings"]["phone_number"] is None
    assert "<tech_support_policy>" in data.policy_text(path)


@pytest.mark.parametrize("split", list(SPLIT_SIZES))
def test_split_sizes(split):
    tasks = load_tasks(split)
    assert len(tasks) == SPLIT_SIZES[split] and len({t.id for t in tasks}) == len(tasks)


def test_split_relations():
    ids = {s: {t.id for t in load_tasks(s)} for s in SPLIT_SIZES}
    assert ids["base"] == ids["train"] | ids["test"] and not ids["train"] & ids["test"]
    assert not ids["small"] & ids["base"] and ids["small"] <= ids["full"]
    assert load_tasks("all") == load_tasks("base")


@pytest.mark.parametrize("split", ["small", "test"])
def test_reference_actions_score_one_per_task(split):
    for task in load_tasks(split):
        score = evaluate_episode(task, reference_calls(task))
        assert score.reward == 1.0, (task.id, score)


@pytest.mark.parametrize("split", list(SPLIT_SIZES))
def test_do_nothing_pass_counts(split):
    passes = sum(evaluate_episode(t, []).reward == 1.0 for t in load_tasks(split))
    assert passes == DO_NOTHING_PASSES[split]


def test_full_split_replays_and_leaves_the_base_untouched(path):
    before = _base_dump(path)
    failed = [t.id for t in load_tasks("full") if evaluate_episode(t, reference_calls(t)).reward != 1.0]
    assert failed == []
    assert _base_dump(path) == before


def test_both_requestors_are_needed():
    task = next(t for t in load_tasks("small") if {a.requestor for a in t.actions} == {"user", "assistant"})
    only_agent = [(r, c) for r, c in reference_calls(task) if r == "assistant"]
    assert evaluate_episode(task, only_agent).reward == 0.0


def test_payment_flow_syncs_both_sides(path):
    task = next(t for t in load_tasks("full") if any(a.call.name == "make_payment" for a in t.actions))
    state = initial_state(task, path)
    assert state.surroundings["line_active"] is False
    run_call(state, ToolCall("send_payment_request", {"customer_id": "C1001", "bill_id": "B1234321"}, "1"))
    assert "B1234321" in run_call(state, ToolCall("check_payment_request", {}, "2"), "user")
    run_call(state, ToolCall("make_payment", {}, "3"), "user")
    assert state.bills.peek("B1234321")["status"] == "Paid" and state.surroundings["payment_request"] is None
    assert data.base_db(path).bills.get("B1234321") is None


def test_action_matching_follows_compare_args():
    act = Action("assistant", ToolCall("transfer_to_human_agents", {"summary": "x"}, "a"), compare_args=())
    assert action_matches(act, ToolCall("transfer_to_human_agents", {"summary": "anything"}, "b"))
    full = Action("user", ToolCall("grant_app_permission", {"app_name": "messaging", "permission": "sms"}, "a"))
    assert action_matches(full, ToolCall("grant_app_permission", {"app_name": "messaging", "permission": "sms"}, "b"))
    assert not action_matches(full, ToolCall("grant_app_permission", {"app_name": "messaging", "permission": "storage"}, "b"))


def test_action_basis_tasks_need_the_transfer():
    task = next(t for t in load_tasks("full") if "ACTION" in t.reward_basis)
    without = [(r, c) for r, c in reference_calls(task) if c.name != "transfer_to_human_agents"]
    assert evaluate_episode(task, reference_calls(task)).reward == 1.0
    assert evaluate_episode(task, without).breakdown["ACTION"] == 0.0


def test_abnormal_end_scores_zero():
    task = load_tasks("small")[0]
    assert evaluate_episode(task, reference_calls(task), termination="max_steps").reward == 0.0


def test_tool_schemas_and_write_sets():
    agent, user = tool_specs(), user_tool_specs()
    assert len(agent) == 13 and {s.name for s in agent if s.writes} == WRITE_TOOLS and len(WRITE_TOOLS) == 6
    assert len(user) == 30 and {s.name for s in user if s.writes} == USER_WRITE_TOOLS and len(USER_WRITE_TOOLS) == 15
    assert not {s.name for s in agent} & {s.name for s in user}
    assert all(s.schema["function"]["description"] for s in (*agent, *user))


def test_tool_errors_change_nothing(path):
    state = initial_state(get_task(load_tasks("small")[0].id), path)
    before = json.dumps(state.model_dump(), sort_keys=True, default=str)
    with pytest.raises(ValueError, match="Refuel amount must be positive"):
        run_call(state, ToolCall("refuel_data", {"customer_id": "C1001", "line_id": "L1002", "gb_amount": 0}, "1"))
    assert json.dumps(state.model_dump(), sort_keys=True, default=str) == before


# -- the env (dual control) ------------------------------------------------------------------
from sgcd_envs.core import AGENT_STOP_TOKEN, USER_SIDE  # noqa: E402
from sgcd_envs.tau2_telecom.demonstration import task_turns, user_request  # noqa: E402
from sgcd_envs.tau2_telecom.env import Tau2TelecomEnv  # noqa: E402
from sgcd_envs.tau2_telecom.scripted_user import NOT_ABLE, ScriptedUser  # noqa: E402


def _play(env, turns):
    reward, info = 0.0, {}
    for turn in turns:
        _, reward, terminated, truncated, info = env.step(turn)
        if terminated or truncated:
            return reward, info
    raise AssertionError("the turns did not end the episode")


@pytest.mark.parametrize("split", ["small", "base"])
def test_reference_turns_through_the_env_score_one_on_every_task(split, path):
    before = _base_dump(path)
    env = Tau2TelecomEnv(split=split)
    for task in env.tasks:
        env.reset(seed=0, options={"task_id": task.id})
        reward, info = _play(env, task_turns(task))
        assert reward == 1.0, (task.id, info["termination"], info["env_assertions"], info["action_matches"])
        assert info["user_tool_calls"] == sum(a.requestor == "user" for a in task.actions)
        assert info["write_calls"] == task.write_actions
        assert info["user_simulator"] == "scripted-stand-in"
    assert _base_dump(path) == before


@pytest.mark.parametrize("split", ["small", "train", "test"])
def test_do_nothing_agent_scores_zero_through_the_env(split):
    env = Tau2TelecomEnv(split=split)
    passes = 0
    for task in env.tasks:
        env.reset(seed=0, options={"task_id": task.id})
        passes += _play(env, [AGENT_STOP_TOKEN])[0] == 1.0
    assert passes == DO_NOTHING_PASSES[split]


def _task_with_user_action(name: str):
    return next(t for t in load_tasks("base") if [a.call.name for a in t.actions if a.requestor == "user"][:1] == [name])


def test_the_users_tool_use_is_in_the_trajectory_not_in_the_agents_view():
    task = _task_with_user_action("toggle_airplane_mode")
    env = Tau2TelecomEnv(split="base")
    env.reset(seed=0, options={"task_id": task.id})
    airplane_before = env.state.device["airplane_mode"]
    obs, *_ = env.step("Please toggle airplane mode on your phone.")
    assert env.state.device["airplane_mode"] != airplane_before  # the user's call ran on the user's side
    assert [m["role"] for m in obs] == ["user", "assistant", "user"]
    assert obs[-1]["content"].startswith("I did that. toggle_airplane_mode:")
    hidden = [m for m in env.trajectory if m.get("requestor") == USER_SIDE]
    assert [m["role"] for m in hidden] == ["user", "tool"]
    assert hidden[0]["tool_calls"][0]["function"]["name"] == "toggle_airplane_mode"
    assert env.user_tool_calls[0].name == "toggle_airplane_mode" and env.tool_calls == []


def test_the_stand_in_runs_named_reads_and_refuses_writes_that_are_not_its_reference_actions():
    task = _task_with_user_action("toggle_airplane_mode")
    env = Tau2TelecomEnv(split="base")
    env.reset(seed=0, options={"task_id": task.id})
    obs, *_ = env.step("What does your status bar show?")
    assert obs[-1]["content"].startswith("I did that. check_status_bar:")
    obs, *_ = env.step("Is Wi-Fi calling on? Please check.")
    assert obs[-1]["content"].startswith("I did that. check_wifi_calling_status:")
    assert "toggle_wifi_calling" not in {a.call.name for a in task.actions}
    before = env.state_fingerprint()
    obs, *_ = env.step("Please toggle Wi-Fi calling.")  # a change that is not among the task's user actions
    assert obs[-1]["content"] == NOT_ABLE and env.state_fingerprint() == before


class _ErringUser(ScriptedUser):
    """Calls a user tool with bad arguments on every turn (a dual-control user's mistakes)."""

    def respond(self, messages):
        if messages[-1].get("requestor") == USER_SIDE:
            return "It did not work."
        return {"role": "user", "content": "", "tool_calls": [
            {"id": "u", "type": "function", "function": {"name": "grant_app_permission", "arguments": "{}"}}]}


def test_user_tool_errors_count_towards_max_errors_and_change_nothing():
    env = Tau2TelecomEnv(split="small", user=_ErringUser(), max_errors=3)
    env.reset(seed=0)
    start = env.state_fingerprint()
    for turn in range(1, 4):
        _, reward, terminated, truncated, info = env.step("How can I help?")
        assert env.state_fingerprint() == start
    assert terminated and info["termination"] == "too_many_errors" and reward == 0.0
    errors = [m for m in env.trajectory if m["role"] == "tool"]
    assert len(errors) == 3 and all(m["content"].startswith("Error: Invalid arguments") for m in errors)


def test_user_requests_name_what_the_stand_in_recognises():
    for task in load_tasks("full")[:300]:
        for action in task.actions:
            if action.requestor == "user":
                text = user_request(action.call)
                user = ScriptedUser()
                user.reset(task)
                user._pending = [action.call]
                reply = user.respond([{"role": "assistant", "content": text}])
                assert isinstance(reply, dict) and reply["tool_calls"][0]["function"]["name"] == action.call.name, text


class _FuzzUser(ScriptedUser):
    """On every agent message, calls a few random user tools with random arguments (a fuzzing user)."""

    def __init__(self, rng, calls):
        super().__init__()
        self.rng, self.calls = rng, calls

    def respond(self, messages):
        if messages[-1].get("requestor") == USER_SIDE:
            return "Done."
        return {"role": "user", "content": "", "tool_calls": [
            ToolCall(name, args, f"fuzz_{i}").to_openai() for i, (name, args) in enumerate(self.rng.sample(self.calls, 3))]}


def _fuzz_calls(tools, ids):
    """Each tool with a few argument sets: task-like ids and values, wrong types, missing ones."""
    values = [*ids, "", "4g_only", "messaging", "storage", 2.0, -1, None, {"apn_name": "broken"}, True]
    out = []
    for spec in tools:
        names = list(spec.parameters.get("properties", {}))
        out.append((spec.name, {}))
        for seed in range(3):
            out.append((spec.name, {n: values[(seed * 7 + j * 3) % len(values)] for j, n in enumerate(names)}))
    return out


def test_base_db_unchanged_after_fuzzing_both_sides(path):
    """Random calls of both sides through the env, valid-looking and malformed: each episode
    changes only its own state, the shared base DBs stay as loaded."""
    import random

    before = _base_dump(path)
    rng = random.Random(3)
    ids = ["C1001", "C1002", "L1001", "L1002", "L1003", "B1001", "B1003", "P1001", "D1001", "555-123-2002"]
    agent_calls = _fuzz_calls(tool_specs(), ids)
    env = Tau2TelecomEnv(split="base", user=_FuzzUser(rng, _fuzz_calls(user_tool_specs(), ids)), max_errors=1000)
    changed = 0
    for i, task in enumerate(env.tasks[:20]):
        env.reset(seed=i, options={"task_id": task.id})
        start = env.state_fingerprint()
        for _ in range(6):
            name, args = rng.choice(agent_calls)
            text = ToolCall(name, args, "a").to_hermes() if rng.random() < 0.7 else "Please try that again."
            *_, term, trunc, _ = env.step(text)
            if term or trunc:
                break
        changed += env.state_fingerprint() != start
    assert changed > 0 and _base_dump(path) == before
