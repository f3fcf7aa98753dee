"""ChatClient against a real HTTP stub server on loopback (tests/llm/openai_stub.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from pydantic import ValidationError

from adapters.llm import ChatClient, LLMEndpoint, LLMError
from adapters.llm.client import short_reason
from tests.llm.openai_stub import Reply, tool_call

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]


def test_normal_answer_and_wire_format(stub_server, make_client):
    stub_server.push("Hi there.")
    client = make_client(temperature=0.3, max_tokens=77)
    assert client.complete(MSGS) == "Hi there."
    (body,) = stub_server.requests
    assert body["model"] == "stub-model" and body["messages"] == MSGS
    assert body["temperature"] == 0.3 and body["max_tokens"] == 77 and "seed" not in body
    assert stub_server.headers[0]["authorization"] == "Bearer test-key"
    assert (client.calls, client.attempts, client.retries, client.errors) == (1, 1, 0, 0)


def test_seed_is_sent(stub_server, make_client):
    stub_server.push("a")
    make_client().complete(MSGS, seed=7)
    assert stub_server.requests[0]["seed"] == 7


def test_timeout_raises_llm_error(stub_server, make_client):
    stub_server.push(Reply(content="too late", delay_s=2.0))
    client = make_client(timeout_s=0.3, max_retries=0)
    t0 = time.perf_counter()
    with pytest.raises(LLMError, match=r"failed after 1 attempt\(s\): timed out after 0.3 s"):
        client.complete(MSGS)
    assert time.perf_counter() - t0 < 1.5  # did not wait for the 2 s answer
    assert client.errors == 1


def test_timeout_then_success_is_retried(stub_server, make_client):
    stub_server.push(Reply(content="late", delay_s=0.8), "on time")
    client = make_client(timeout_s=0.3, max_retries=1)
    assert client.complete(MSGS) == "on time"
    assert (client.attempts, client.retries) == (2, 1)


def test_500_then_success_is_retried_with_backoff(stub_server, make_client):
    sleeps: list[float] = []
    stub_server.push(Reply(status=500), Reply(status=503), "recovered")
    client = make_client(max_retries=3, backoff_s=0.01)
    client._sleep = lambda s: sleeps.append(s)  # record the backoff instead of sleeping
    assert client.complete(MSGS) == "recovered"
    assert len(stub_server.requests) == 3 and client.retries == 2
    assert sleeps == [0.01, 0.02]  # backoff_s * 2^r


def test_retry_after_header_is_honoured_up_to_the_cap(stub_server, make_client):
    sleeps: list[float] = []
    stub_server.push(Reply(status=429, headers={"retry-after-ms": "40"}), "ok")
    client = make_client(backoff_s=0.01, max_backoff_s=0.03)
    client._sleep = lambda s: sleeps.append(s)
    assert client.complete(MSGS) == "ok"
    assert sleeps == [0.03]


def test_persistent_500_raises_after_bounded_attempts(stub_server, make_client):
    stub_server.push(*[Reply(status=500)] * 5)
    client = make_client(max_retries=2)
    with pytest.raises(LLMError, match=r"failed after 3 attempt\(s\): HTTP 500"):
        client.complete(MSGS)
    assert len(stub_server.requests) == 3


def test_client_errors_are_not_retried(stub_server, make_client):
    stub_server.push(Reply(status=400), "never sent")
    with pytest.raises(LLMError, match="HTTP 400"):
        make_client(max_retries=3).complete(MSGS)
    assert len(stub_server.requests) == 1


def test_401_names_the_unset_key_variable(stub_server, monkeypatch):
    monkeypatch.delenv("SGCD_MISSING_KEY", raising=False)
    stub_server.push(Reply(status=401))
    client = ChatClient(LLMEndpoint(base_url=stub_server.base_url, model="m",
                                    api_key_env="SGCD_MISSING_KEY", max_retries=0))
    with pytest.raises(LLMError, match="SGCD_MISSING_KEY is not set"):
        client.complete(MSGS)
    assert stub_server.headers[0]["authorization"].startswith("Bearer ")  # a dummy key


@pytest.mark.parametrize(
    "reply, match",
    [
        (Reply(body=b"<html>502 Bad Gateway</html>", content_type="text/html"), r"not JSON"),
        (Reply(body=b"{not json at all"), r"invalid JSON"),
        (Reply(body=json.dumps({"object": "chat.completion"}).encode()), r"no choices"),
        (Reply(body=json.dumps({"choices": [{"index": 0, "message": {"role": "assistant"}}]}).encode()),
         r"no text content"),
    ],
    ids=["html", "broken-json", "no-choices", "no-content"],
)
def test_garbage_bodies_raise_llm_error(stub_server, make_client, reply, match):
    stub_server.push(reply)
    with pytest.raises(LLMError, match=match):
        make_client(max_retries=0).complete(MSGS)


def test_connection_refused_raises_llm_error():
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(LLMEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                    max_retries=1, backoff_s=0.0))
    with pytest.raises(LLMError, match=r"after 2 attempt\(s\): connection failed"):
        client.complete(MSGS)


def test_cache_serves_repeats_without_the_server(stub_server, make_client, tmp_path):
    stub_server.push("first", "second")
    client = make_client(cache=True)
    assert client.complete(MSGS) == "first"
    assert client.complete(MSGS) == "first"  # identical request: from disk
    assert len(stub_server.requests) == 1 and client.cache_hits == 1
    # another client on the same folder (a new process, say) also hits the cache
    assert make_client(cache=True).complete(MSGS) == "first"
    assert len(stub_server.requests) == 1
    # different sampling parameters or seed are different requests
    assert make_client(cache=True, temperature=0.5).complete(MSGS) == "second"
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 2 and not list((tmp_path / "cache").rglob(".tmp-*"))
    entry = json.loads(files[0].read_text())
    assert set(entry) >= {"model", "text", "messages"}


def test_cache_key_and_eviction_and_corrupt_entries(stub_server, make_client, tmp_path):
    stub_server.push("one", "two", "three")
    client = make_client(cache=True)
    key = client.cache_key(MSGS)
    assert len(key) == 64 and key == client.cache_key([dict(m) for m in MSGS])
    assert key != client.cache_key(MSGS, seed=1)
    completion = client.request(MSGS)
    assert completion.key == key and not completion.cached and completion.attempts == 1
    assert client.evict(key) and not client.evict(key)
    assert client.complete(MSGS) == "two"
    (tmp_path / "cache" / key[:2] / f"{key}.json").write_text("{truncated")
    assert client.complete(MSGS) == "three"  # unreadable entry = miss, then rewritten
    assert client.request(MSGS).cached


def test_bad_messages_are_rejected_before_sending(stub_server, make_client):
    client = make_client()
    with pytest.raises(ValueError, match="non-empty list"):
        client.complete([])
    with pytest.raises(ValueError, match=r"messages\[0\]\['role'\] is 'robot'; allowed"):
        client.complete([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match=r"messages\[0\]\['content'\] must be a string"):
        client.complete([{"role": "user", "content": None}])
    assert stub_server.requests == []


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("base_url", "127.0.0.1:8000/v1", "must start with http:// or https://"),
        ("model", "  ", "non-empty model name"),
        ("api_key_env", "my key", "environment variable NAME"),
        ("timeout_s", 0, "timeout_s"),
        ("max_retries", -1, "max_retries"),
        ("temperature", 3.0, "temperature"),
        ("max_tokens", 0, "max_tokens"),
        ("colour", "blue", "colour"),
    ],
)
def test_endpoint_validation_names_the_field(field, value, match):
    settings = {"base_url": "http://localhost:8000/v1", "model": "m", field: value}
    with pytest.raises(ValidationError, match=match):
        LLMEndpoint(**settings)


def test_endpoint_defaults_and_key_lookup(monkeypatch):
    ep = LLMEndpoint(base_url="https://api.example.com/v1/", model="gpt-x")
    assert ep.base_url == "https://api.example.com/v1" and ep.api_key_env == "SGCD_LLM_API_KEY"
    monkeypatch.setenv("SGCD_LLM_API_KEY", "sk-1")
    assert ep.api_key() == "sk-1"
    monkeypatch.setenv("SGCD_LLM_API_KEY", "")
    assert ep.api_key() is None


def test_package_does_not_import_torch():
    code = ("import sys, adapters.llm; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("garbage", [Reply(body=b"{not json at all"),
                                     Reply(body=b"<html>502 Bad Gateway</html>", content_type="text/html")],
                         ids=["broken-json", "html"])
def test_a_body_that_is_not_json_is_retried(stub_server, make_client, garbage):
    stub_server.push(garbage, "recovered")
    client = make_client(max_retries=1)
    assert client.complete(MSGS) == "recovered"
    assert (client.attempts, client.retries, client.errors) == (2, 1, 0)


def test_llm_error_reason_is_short_and_names_the_cause(stub_server, make_client):
    stub_server.push(Reply(body=b"<html>502 Bad Gateway</html>", content_type="text/html"))
    with pytest.raises(LLMError) as info:
        make_client(max_retries=0).complete(MSGS)
    assert info.value.reason.startswith("malformed body: not JSON") and stub_server.base_url not in info.value.reason
    assert short_reason(info.value.reason) == "malformed body: not JSON"
    assert short_reason("no numbered lines in the answer (expected '1. ...'); got: 'x'") == (
        "no numbered lines in the answer")


# ---------------------------------------------------------------- tool calling (dual-control LLM user)

TOOLS = [{"type": "function", "function": {
    "name": "check_status_bar", "description": "What the phone's status bar shows.",
    "parameters": {"type": "object", "properties": {}, "required": []}}},
    {"type": "function", "function": {
        "name": "set_network_mode_preference", "description": "Set the preferred network mode.",
        "parameters": {"type": "object", "properties": {"mode": {"type": "string"}}, "required": ["mode"]}}}]

TOOL_CONVERSATION = [
    {"role": "system", "content": "You are a customer."},
    {"role": "user", "content": "What does your status bar show?"},
    {"role": "assistant", "content": None, "tool_calls": [tool_call("check_status_bar", {}, "u1")]},
    {"role": "tool", "tool_call_id": "u1", "name": "check_status_bar", "content": "No signal.",
     "requestor": "user"},
]


def test_tools_are_sent_and_tool_calls_come_back(stub_server, make_client):
    stub_server.push(Reply(tool_calls=[tool_call("set_network_mode_preference", {"mode": "4g_5g_preferred"},
                                                 "call_7")]))
    client = make_client()
    completion = client.request(MSGS, tools=TOOLS)
    assert completion.text == "" and completion.finish_reason == "tool_calls"
    assert completion.tool_calls == ({"id": "call_7", "type": "function", "function": {
        "name": "set_network_mode_preference", "arguments": '{"mode": "4g_5g_preferred"}'}},)
    (body,) = stub_server.requests
    assert body["tools"] == TOOLS and "tool_choice" not in body  # the server's default: auto
    assert stub_server.tools_sent == [TOOLS]


def test_text_beside_tool_calls_and_a_call_without_id(stub_server, make_client):
    stub_server.push(Reply(content="Let me look.", tool_calls=[tool_call("check_status_bar", call_id=None)]),
                     Reply(tool_calls=[tool_call("check_status_bar")]))
    client = make_client()
    completion = client.request(MSGS, tools=TOOLS)
    assert completion.text == "Let me look."
    assert completion.tool_calls == ({"id": "", "type": "function",
                                      "function": {"name": "check_status_bar", "arguments": "{}"}},)
    assert client.complete(MSGS, tools=TOOLS) == ""  # complete() keeps returning the text only


def test_requests_without_tools_send_no_tools_key(stub_server, make_client):
    stub_server.push("a", "b")
    client = make_client()
    assert client.complete(MSGS) == "a" and client.complete(MSGS, tools=[]) == "b"
    assert stub_server.tools_sent == [None, None] and all("tools" not in b for b in stub_server.requests)


def test_tool_messages_in_the_request_are_passed_through(stub_server, make_client):
    stub_server.push("My status bar shows no signal.")
    assert make_client().complete(TOOL_CONVERSATION, tools=TOOLS) == "My status bar shows no signal."
    sent = stub_server.requests[0]["messages"]
    assert sent[2] == {"role": "assistant", "content": "", "tool_calls": [tool_call("check_status_bar", {}, "u1")]}
    assert sent[3] == {"role": "tool", "tool_call_id": "u1", "content": "No signal."}  # only wire fields
    assert sent[:2] == TOOL_CONVERSATION[:2]


def test_cache_returns_tool_calls_and_keys_on_the_tools(stub_server, make_client, tmp_path):
    call = tool_call("check_status_bar", {}, "call_1")
    stub_server.push(Reply(tool_calls=[call]), "no tools", "other tools")
    client = make_client(cache=True)
    first = client.request(MSGS, tools=TOOLS)
    again = make_client(cache=True).request(MSGS, tools=TOOLS)  # a new process on the same folder
    assert again.cached and again.tool_calls == first.tool_calls == (call,) and again.text == ""
    assert len(stub_server.requests) == 1
    entry = json.loads((tmp_path / "cache" / first.key[:2] / f"{first.key}.json").read_text())
    assert entry["tool_calls"] == [call] and entry["text"] == ""
    assert client.request(MSGS).text == "no tools"  # the same messages without tools: another request
    assert client.request(MSGS, tools=TOOLS[:1]).text == "other tools"  # other tools: another request
    assert len({client.cache_key(MSGS), client.cache_key(MSGS, tools=TOOLS), client.cache_key(MSGS, tools=TOOLS[:1])}) == 3
    no_calls = client.request(MSGS)
    assert no_calls.cached and no_calls.tool_calls == ()


def test_cache_key_without_tools_is_unchanged(make_client):
    """Pinned: the key the client computed before tool calling existed (existing caches stay valid)."""
    client = make_client()
    key = "3a7faab5abc825b23646dd8b032119092f4998a21a782a51166a97b040bbe3b5"
    assert client.cache_key(MSGS) == client.cache_key(MSGS, tools=None) == client.cache_key(MSGS, tools=[]) == key
    assert client.cache_key(MSGS, seed=7) == "34de06e80e40261664aaac7ff67ac23001be14d39bdae0c569200949265664f6"
    assert client.cache_key(MSGS, tools=TOOLS) != key


def _with(index: int, **fields):
    """TOOL_CONVERSATION with message ``index`` changed (a field set to ``...`` is removed)."""
    messages = [dict(m) for m in TOOL_CONVERSATION]
    messages[index].update(fields)
    messages[index] = {k: v for k, v in messages[index].items() if v is not ...}
    return messages


@pytest.mark.parametrize("messages, match", [
    (_with(1, tool_calls=[tool_call("x", {}, "a")]), r"messages\[1\] has 'tool_calls' but role 'user'"),
    (_with(2, tool_calls="check_status_bar"), r"messages\[2\]\['tool_calls'\] must be a non-empty list"),
    (_with(2, tool_calls=["check_status_bar"]), r"messages\[2\]\['tool_calls'\]\[0\] must be a dict"),
    (_with(2, tool_calls=[tool_call("x", {}, None)]), r"messages\[2\]\['tool_calls'\]\[0\]\['id'\] must be"),
    (_with(2, tool_calls=[{**tool_call("x"), "type": "custom"}]), r"\['type'\] is 'custom'; must be 'function'"),
    (_with(2, tool_calls=[{"id": "a", "type": "function", "name": "x"}]), r"\['function'\] must be a dict"),
    (_with(2, tool_calls=[{"id": "a", "type": "function", "function": {"name": "x", "arguments": {}}}]),
     r"\['function'\]\['arguments'\] must be a string"),
    (_with(2, tool_calls=[{"id": "a", "type": "function", "function": {"arguments": "{}"}}]),
     r"\['function'\]\['name'\] must be a non-empty string"),
    (_with(2, content=None, tool_calls=...), r"messages\[2\]\['content'\] must be a string"),
    (_with(3, tool_call_id=7), r"messages\[3\]\['tool_call_id'\] must be a non-empty string"),
    (_with(1, tool_call_id="u1"), r"messages\[1\] has 'tool_call_id' but role 'user'"),
], ids=["calls-on-user", "calls-not-list", "call-not-dict", "no-id", "bad-type", "no-function",
        "arguments-object", "no-name", "null-content-without-calls", "id-not-str", "id-on-user"])
def test_malformed_tool_messages_are_rejected_before_sending(stub_server, make_client, messages, match):
    with pytest.raises(ValueError, match=match):
        make_client().complete(messages)
    assert stub_server.requests == []


@pytest.mark.parametrize("tools, match", [("check_status_bar", r"tools must be a list"),
                                          ([{"name": "check_status_bar"}], r"tools\[0\] must be an OpenAI function")])
def test_malformed_tools_are_rejected_before_sending(stub_server, make_client, tools, match):
    with pytest.raises(ValueError, match=match):
        make_client().request(MSGS, tools=tools)
    assert stub_server.requests == []


def test_a_malformed_tool_call_in_the_answer_is_an_llm_error(stub_server, make_client):
    stub_server.push(Reply(tool_calls=[{"id": "c", "type": "function", "function": {"arguments": "{}"}}]))
    client = make_client(max_retries=2)
    with pytest.raises(LLMError, match="malformed tool call") as info:
        client.request(MSGS, tools=TOOLS)
    assert info.value.reason == "malformed tool call in the answer" and client.attempts == 1  # not retried
