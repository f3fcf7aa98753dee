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
from tests.llm.openai_stub import Reply

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
