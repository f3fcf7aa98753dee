"""Fixtures for the LLM-client tests: a stub OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm.openai_stub import StubOpenAIServer

from adapters.llm import ChatClient, LLMEndpoint


@pytest.fixture
def stub_server() -> Iterator[StubOpenAIServer]:
    """A started :class:`StubOpenAIServer` (stopped after the test)."""
    with StubOpenAIServer() as server:
        yield server


@pytest.fixture
def make_client(stub_server: StubOpenAIServer, tmp_path, monkeypatch):
    """Build a ChatClient against the stub: short timeout, tiny backoff, optional cache."""
    monkeypatch.setenv("SGCD_TEST_LLM_KEY", "test-key")

    def build(cache: bool = False, **settings) -> ChatClient:
        fields = dict(base_url=stub_server.base_url, model="stub-model",
                      api_key_env="SGCD_TEST_LLM_KEY", timeout_s=2.0, max_retries=2,
                      backoff_s=0.01, max_backoff_s=0.05)
        fields.update(settings)
        return ChatClient(LLMEndpoint(**fields), cache_dir=tmp_path / "cache" if cache else None)

    return build
