"""`sgcd-bench sft` clones the env's reference trajectories into a cached model, and `compare`
with the same warm-start settings starts every method from that cache."""

from __future__ import annotations

import json

from tests.cli.helpers import invoke, only_an_error_line, tiny_model_dir


def test_sft_is_cached_and_compare_starts_from_it(tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    cache = {"SGCD_CACHE_DIR": str(tmp_path / "cache")}
    warm = ["--model", str(model_dir), "--out", str(tmp_path / "runs"), "--sft-demos", "6", "--sft-epochs", "3",
            "--sft-lr", "3e-3"]
    made = invoke("sft", *warm, env=cache)
    assert made.exit_code == 0, made.output
    assert "cloning 6 reference trajectories of Tiny shop" in made.output and "warm-started model:" in made.output
    (folder,) = (tmp_path / "cache" / "sft").iterdir()
    assert (folder / "model.safetensors").is_file()
    report = json.loads((folder / "sft_report.json").read_text())
    assert report["demos"] == 6 and len(report["epoch_losses"]) == 3
    assert report["held_out_after"] < report["held_out_before"]  # cloning generalises to unseen tasks
    assert 0.0 <= report["train_success"] <= 1.0

    compared = invoke("compare", "grpo", *warm, "--steps", "1", "--group-size", "2", "--eval-tasks", "2",
                      "--no-baseline", env=cache)
    assert compared.exit_code == 0, compared.output
    assert "warm start (cached)" in compared.output and f"+sft:{folder.name}" in compared.output


def test_warm_start_on_an_env_without_demonstrations_is_refused(tmp_path):
    only_an_error_line(invoke("sft", "--env", "appworld", "--out", str(tmp_path)),
                       "registers no reference trajectories")
