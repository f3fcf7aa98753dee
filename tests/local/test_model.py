"""Loading the embedded default model: GGUF → cached HF folder, and clear errors."""

from __future__ import annotations

import pytest
import torch

from adapters.local.model import ModelNotFoundError, convert_embedded_default, embedded_gguf_path, load_model, resolve_model


def test_cached_conversion_reproduces_the_gguf_model(converted_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    gguf = embedded_gguf_path()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True,
                                                  dtype=torch.float32).eval()
    cached = load_model(str(converted_model_dir)).model.eval()
    ids = torch.tensor([tokenizer("Hello, I want to change my flight.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(cached(ids).logits, direct(ids).logits, atol=1e-5, rtol=1e-5)
    assert cached.config.tie_word_embeddings and "quantization_config" not in cached.config.to_dict()


def test_conversion_is_cached(converted_model_dir):
    stamp = (converted_model_dir / "model.safetensors").stat().st_mtime_ns
    assert convert_embedded_default(converted_model_dir.parent) == converted_model_dir
    assert (converted_model_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_missing_model_folder_says_what_to_do(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no Hugging Face model folder there.*Nothing is downloaded"):
        resolve_model(str(tmp_path / "missing"))
