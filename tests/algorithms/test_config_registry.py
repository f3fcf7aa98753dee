"""Settings validation, the method registry, import purity, the benchmark CLI."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from algorithms import ConfigError
from algorithms.config import DynamicSamplingConfig, GRPOConfig, SDPOConfig, SGCDConfig, config_fields
from algorithms.grpo import grpo_kl_loss
from algorithms.registry import METHODS, get_method
from algorithms.sdpo import sdpo_loss

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "cls,kwargs,field",
    [
        (GRPOConfig, {"eps_lo": -0.1}, "eps_lo"),
        (GRPOConfig, {"eps_hi": -0.2}, "eps_hi"),
        (GRPOConfig, {"beta_kl": float("nan")}, "beta_kl"),
        (GRPOConfig, {"group_size": 1}, "group_size"),
        (GRPOConfig, {"loss_agg_mode": "token_mean"}, "loss_agg_mode"),
        (SGCDConfig, {"w_min": 1.5, "w_max": 1.2}, "w_min"),
        (SGCDConfig, {"w_min": 0.5, "w_max": 0.8}, "w_max"),
        (SGCDConfig, {"beta": -1.0}, "beta"),
        (SGCDConfig, {"teacher": "emaa"}, "teacher"),
        (SGCDConfig, {"chunk_size": 0}, "chunk_size"),
        (SDPOConfig, {"alpha": 1.2}, "alpha"),
        (SDPOConfig, {"alpha": -0.1}, "alpha"),
        (SDPOConfig, {"is_clip": -2.0}, "is_clip"),
        (SDPOConfig, {"topk": 0}, "topk"),
        (DynamicSamplingConfig, {"oversample_factor": 0.5}, "oversample_factor"),
    ],
)
def test_bad_values_fail_at_construction_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError) as ei:
        cls(**kwargs)
    msg = str(ei.value)
    assert f"{cls.__name__}.{field} = {kwargs[field]!r}" in msg and "must be" in msg or "choose one of" in msg
    assert f"{cls.__name__}.{field}" in msg
    assert isinstance(ei.value, ValueError)


def test_did_you_mean_in_config_choices():
    with pytest.raises(ConfigError, match="Did you mean 'ema'"):
        SGCDConfig(teacher="emaa")


@pytest.mark.parametrize("cls", [GRPOConfig, DynamicSamplingConfig, SGCDConfig, SDPOConfig])
def test_defaults_valid_frozen_and_documented(cls):
    cfg = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.__setattr__(dataclasses.fields(cls)[0].name, None)
    docs = config_fields(cls)
    assert set(docs) == {f.name for f in dataclasses.fields(cls)}
    for name, doc in docs.items():  # every default names its source
        assert any(k in doc for k in ("paper", "ours", "SDPO", "verl", "README", "SPEC")), (name, doc)


def test_registry():
    assert set(METHODS) == {"grpo", "sgcd", "sdpo"}
    assert get_method("grpo").loss_fn is grpo_kl_loss and not get_method("grpo").needs_teacher
    assert get_method("sgcd").needs_summarizer and not get_method("sgcd").replaces_pg_loss
    assert get_method("sdpo").loss_fn is sdpo_loss and get_method("sdpo").replaces_pg_loss
    with pytest.raises(KeyError, match="Did you mean 'sgcd'"):
        get_method("sgdc")


def test_algorithms_imports_only_torch_and_stdlib():
    code = (
        "import sys, algorithms, algorithms.grpo, algorithms.sampling, algorithms.divergence, "
        "algorithms.sgcd, algorithms.sdpo, algorithms.config, algorithms.registry\n"
        "bad = [m for m in ('numpy', 'transformers', 'gymnasium', 'sgcd_envs', 'adapters', 'openai', "
        "'pydantic', 'rich', 'typer', 'sgcd_bench', 'leaderboards') if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    # torch itself may import numpy when available; everything else must be absent
    assert [m for m in eval(out.stdout) if m != "numpy"] == []


def test_benchmark_cli_smoke():
    out = subprocess.run(
        [sys.executable, "benchmarks/divergence.py", "--tokens", "24", "--hidden", "16", "--vocab", "301",
         "--repeats", "1", "--methods", "naive,chunked:5,chunked:24:64", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2].startswith("naive") and lines[3].startswith("chunked[5,V]") and lines[4].startswith("chunked[24,64]")
    for line in lines[3:5]:
        err_kl, err_h = (float(x) for x in line.split()[-2:])
        assert err_kl < 1e-5 and err_h < 1e-5
