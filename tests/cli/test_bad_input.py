"""Every documented bad input (issue 18) ends the real CLI with exit code 1 and one line, before
the model is loaded: splits, devices, model configs, output paths, a damaged store, LLM options
and absurd sizes. Models here are config-only folders: the checks must not need weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from leaderboards.store import ResultStore
from tests.cli.helpers import config_only_model, invoke, only_an_error_line


@pytest.fixture
def model(tmp_path: Path) -> str:
    """A tiny Llama config (context 4096) with no weights and no tokenizer."""
    return str(config_only_model(tmp_path / "model"))


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    """An empty converted-model cache: a test that reached the embedded model would convert it."""
    return {"SGCD_CACHE_DIR": str(tmp_path / "cache")}


def unwritable_dir() -> Path:
    """An existing folder nobody (root included) can write into; skip where there is none."""
    folder = Path("/sys")
    try:
        (folder / "sgcd-bench-probe").touch()
    except OSError:
        return folder
    (folder / "sgcd-bench-probe").unlink()
    pytest.skip("/sys is writable here")


# ----------------------------------------------------------------------------- splits
@pytest.mark.parametrize("split, needle", [("nosuchsplit", "Choose one of: train, test, all"),
                                           ("tset", "Did you mean 'test'?")])
def test_eval_unknown_split(tmp_path, model, split, needle):
    only_an_error_line(invoke("eval", "--env", "tau3-airline", "--split", split, "--model", model, "--out",
                              str(tmp_path / "runs")), f"--split {split}", f"Unknown split '{split}'", needle)


def test_compare_unknown_eval_split(tmp_path, model):
    only_an_error_line(invoke("compare", "grpo", "--eval-split", "tets", "--model", model, "--out",
                              str(tmp_path / "runs")), "--eval-split tets", "Did you mean 'test'?")


# ----------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device, needle", [("tpu", "not a torch device"), ("meta", "cannot run a model"),
                                            ("cuda:0:1", "not a torch device")])
def test_device_torch_cannot_use(tmp_path, model, device, needle):
    only_an_error_line(invoke("train", "grpo", "--device", device, "--model", model, "--out", str(tmp_path)),
                       f"--device {device}", needle)


def test_cuda_without_cuda(tmp_path, model, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    only_an_error_line(invoke("train", "grpo", "--device", "cuda", "--model", model, "--out", str(tmp_path)),
                       "--device cuda", "no CUDA device is available", "--device cpu")


def test_gpu_preset_without_cuda_names_the_preset(tmp_path, model, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    only_an_error_line(invoke("train", "grpo", "--preset", "gpu", "--model", model, "--out", str(tmp_path)),
                       "preset 'gpu' wants device 'cuda'", "no CUDA device is available")


# ----------------------------------------------------------------------------- model folders
@pytest.mark.parametrize("text, needles", [
    ('{"model_type": "llama",', ("is not valid JSON", "line 1")),
    ("[1, 2]", ("is not a JSON object",)),
    ('{"hidden_size": 32}', ("has no model_type",)),
    ('{"model_type": "lama"}', ("unknown model_type 'lama'", "Did you mean 'llama'?")),
    ('{"model_type": "t5"}', ("model_type 't5'", "no causal language model")),
])
def test_broken_model_config(tmp_path, text, needles):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    only_an_error_line(invoke("train", "grpo", "--model", str(folder), "--out", str(tmp_path / "runs")),
                       f"--model {folder}", *needles)


# ----------------------------------------------------------------------------- output paths
def test_out_is_a_file(tmp_path, model):
    out = tmp_path / "runs"
    out.write_text("not a folder")
    only_an_error_line(invoke("train", "grpo", "--model", model, "--out", str(out)), f"--out {out}", "is a file")
    assert out.read_text() == "not a folder"


def test_out_under_a_file(tmp_path, model):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "runs"
    only_an_error_line(invoke("compare", "grpo", "--model", model, "--out", str(out)), f"--out {out}",
                       "cannot create")


@pytest.mark.parametrize("name", ["", "runs"])
def test_out_unwritable(tmp_path, model, name):
    out = unwritable_dir() / name if name else unwritable_dir()
    only_an_error_line(invoke("train", "grpo", "--model", model, "--out", str(out)), f"--out {out}")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """An --out folder with an empty result store."""
    out = tmp_path / "runs"
    ResultStore(out / "results.sqlite").close()
    return out


@pytest.mark.parametrize("where", ["unwritable", "under a file", "a folder"])
def test_export_unwritable(tmp_path, store_dir, where):
    if where == "unwritable":
        export = unwritable_dir() / "board.md"
    elif where == "under a file":
        (tmp_path / "file").write_text("")
        export = tmp_path / "file" / "board.md"
    else:
        export = tmp_path / "board.md"
        export.mkdir()
    result = invoke("leaderboard", "--out", str(store_dir), "--export", str(export))
    only_an_error_line(result, f"--export {export}")


def test_export_bad_suffix_fails_before_printing(tmp_path, store_dir):
    only_an_error_line(invoke("leaderboard", "--out", str(store_dir), "--export", str(tmp_path / "board.txt")),
                       "use a .md, .csv or .json file name")


# ----------------------------------------------------------------------------- damaged stores
def garbage_store(out: Path) -> bytes:
    out.mkdir(parents=True, exist_ok=True)
    data = b"this is not an SQLite database\n" * 200
    (out / "results.sqlite").write_bytes(data)
    return data


def truncated_store(out: Path) -> bytes:
    """A real store with a few runs, cut to its first pages."""
    with ResultStore(out / "results.sqlite") as store:
        for seed in range(40):
            store.start_run(method="grpo", env="sgcd_envs/Tau3Airline-v0", seed=seed, config={"pad": "x" * 2000})
    path = out / "results.sqlite"
    with open(path, "r+b") as f:
        f.truncate(4096 * 3)
    return path.read_bytes()


@pytest.mark.parametrize("damage", [garbage_store, truncated_store])
def test_damaged_store_in_leaderboard(tmp_path, damage):
    out = tmp_path / "runs"
    before = damage(out)
    only_an_error_line(invoke("leaderboard", "--out", str(out)), str(out / "results.sqlite"))
    assert (out / "results.sqlite").read_bytes() == before


@pytest.mark.parametrize("damage", [garbage_store, truncated_store])
def test_damaged_store_before_training(tmp_path, model, damage):
    out = tmp_path / "runs"
    before = damage(out)
    only_an_error_line(invoke("train", "grpo", "--model", model, "--out", str(out)), str(out / "results.sqlite"))
    assert (out / "results.sqlite").read_bytes() == before


# ----------------------------------------------------------------------------- LLM options
USER_SERVER = ("--user-base-url", "http://127.0.0.1:9/v1", "--user-model", "user")


@pytest.mark.parametrize("option, value, reason", [("--llm-timeout", "0", "greater than 0"),
                                                   ("--llm-timeout", "7200", "less than or equal to 3600"),
                                                   ("--llm-retries", "-1", "greater than or equal to 0")])
@pytest.mark.parametrize("server", [USER_SERVER, ()], ids=["with-a-server", "without"])
def test_llm_limits(tmp_path, model, option, value, reason, server):
    result = invoke("train", "grpo", "--model", model, "--out", str(tmp_path), option, value, *server)
    only_an_error_line(result, f"{option} {value}", reason)
    assert "validation error" not in result.output


def test_llm_bad_url_names_the_option(tmp_path, model):
    result = invoke("eval", "--model", model, "--out", str(tmp_path), "--user-base-url", "localhost:8000",
                    "--user-model", "user")
    only_an_error_line(result, "--user-base-url localhost:8000", "must start with http://")


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("option", ["--max-new-tokens", "--max-turns"])
def test_sizes_beyond_the_context(tmp_path, model, option):
    only_an_error_line(invoke("train", "grpo", "--model", model, "--out", str(tmp_path), option, "100000"),
                       f"{option} 100000", "4096")


@pytest.mark.parametrize("option, needle", [("--max-new-tokens", "context is 8192 tokens"),
                                            ("--max-turns", "at most 1000")])
def test_sizes_beyond_the_embedded_models_context(tmp_path, cache_env, option, needle):
    """The embedded default's context (8192) is known without converting it."""
    only_an_error_line(invoke("eval", "--out", str(tmp_path / "runs"), option, "100000", env=cache_env),
                       f"{option} 100000", needle)
    assert not (tmp_path / "cache").exists()


def test_turns_beyond_the_sane_maximum(tmp_path):
    """A model with a huge context still gets the documented turn ceiling."""
    model = config_only_model(tmp_path / "model", max_position_embeddings=1_000_000)
    only_an_error_line(invoke("train", "grpo", "--model", str(model), "--out", str(tmp_path), "--max-turns",
                              "5000"), "--max-turns 5000", "at most 1000")


def test_the_checks_leave_the_folder_as_it_was(tmp_path, model):
    """A bad input found before work starts writes no store."""
    out = tmp_path / "runs"
    only_an_error_line(invoke("train", "grpo", "--model", model, "--out", str(out), "--max-turns", "100000"))
    assert not (out / "results.sqlite").exists()


def test_sizes_check_warns_when_a_full_episode_overflows():
    from sgcd_bench.preflight import ModelContext, check_sizes
    from sgcd_bench.presets import get_preset, with_overrides

    context = ModelContext(tokens=4096, source="test config")
    assert check_sizes(get_preset("cpu").loop, context) == []
    loop = with_overrides(get_preset("cpu"), max_turns=30, max_new_tokens=512).loop
    (warning,) = check_sizes(loop, context)
    assert "30 turns × 512 tokens" in warning and "4096" in warning


# ----------------------------------------------------------------------------- greedy eval trials
@pytest.mark.parametrize("command", [("eval",), ("compare", "grpo"), ("train", "sgcd")])
def test_several_greedy_eval_trials_are_refused(tmp_path, model, command):
    """The cpu preset evaluates at temperature 0: K trials would repeat one greedy trial K times,
    and pass^k over them would only repeat pass@1. Refused before the model loads or --out is made."""
    out = tmp_path / "runs"
    only_an_error_line(invoke(*command, "--eval-trials", "3", "--model", model, "--out", str(out)),
                       "error: --eval-trials 3 at temperature 0 repeats one greedy trial 3 times",
                       "pass^k needs sampled trials", "no --eval-temperature option", "use --eval-trials 1",
                       "--preset gpu (temperature 1)")
    assert not out.exists()


def test_eval_trials_check():
    from sgcd_bench.preflight import InputError, check_eval_trials

    sampling = {"gpu": 1.0}
    check_eval_trials(1, 0.0, preset="cpu", from_option=True, sampling_presets=sampling)  # one greedy trial
    check_eval_trials(3, 1.0, preset="gpu", from_option=True, sampling_presets=sampling)  # sampled trials
    with pytest.raises(InputError, match=r"^preset 'x' evaluates 2 trials at temperature 0 .*--preset gpu"):
        check_eval_trials(2, 0.0, preset="x", from_option=False, sampling_presets=sampling)
    with pytest.raises(InputError, match=r"use --eval-trials 1$"):  # no other preset samples: no advice to name
        check_eval_trials(2, 0.0, preset="gpu", from_option=True, sampling_presets=sampling)


def test_a_negative_probe_is_refused_before_training(tmp_path, model):
    out = tmp_path / "runs"
    only_an_error_line(invoke("train", "grpo", "--probe-tasks", "-1", "--model", model, "--out", str(out)),
                       "--probe-tasks must be >= 0 (0 = no probe), got -1")
    only_an_error_line(invoke("train", "grpo", "--probe-samples", "-2", "--model", model, "--out", str(out)),
                       "--probe-samples must be >= 0 (0 = greedy), got -2")
    assert not out.exists()
