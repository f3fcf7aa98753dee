"""Fixtures for the local-trainer tests (the tokenizer comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.local.helpers import tiny_llama


@pytest.fixture
def tiny_model(tokenizer):
    return tiny_llama(len(tokenizer))
