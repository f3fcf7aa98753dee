"""The real `sgcd-bench` app through typer's CliRunner: help, bad input, one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest

from tests.cli.helpers import invoke, one_line_error, tiny_model_dir


@pytest.mark.parametrize("command", ["compare", "train", "eval", "leaderboard", "envs", "methods", "inspect-credit",
                                     "appworld"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_compare_help_documents_the_options():
    out = invoke("compare", "--help").output
    for option in ("--preset", "--model", "--summarizer-base-url", "--user-base-url", "--eval-trials", "--out"):
        assert option in out


def test_unknown_method_suggests():
    one_line_error(invoke("compare", "grpo", "sgdc"), "Unknown method 'sgdc'", "Did you mean 'sgcd'?")


def test_unknown_preset():
    one_line_error(invoke("compare", "grpo", "--preset", "cpuu"), "Unknown preset 'cpuu'", "Did you mean 'cpu'?")


def test_missing_model(tmp_path):
    one_line_error(invoke("train", "grpo", "--model", str(tmp_path / "nope"), "--out", str(tmp_path)),
                   "no Hugging Face model folder")


def test_bad_preset_value_fails_before_training(tmp_path):
    one_line_error(invoke("compare", "grpo", "--group-size", "1", "--out", str(tmp_path)),
                   "GRPOConfig.group_size = 1 is invalid")


def test_bad_rollout_batch_fails_before_training(tmp_path):
    one_line_error(invoke("train", "sgcd", "--rollout-batch-groups", "0", "--out", str(tmp_path)),
                   "rollout_batch_groups must be None or >= 1, got 0")


def test_threads_option_sets_the_torch_threads_and_a_bad_count_fails_before_training(tmp_path):
    from sgcd_bench.presets import get_preset, with_overrides

    assert with_overrides(get_preset("cpu"), torch_threads=1).torch_threads == 1
    one_line_error(invoke("train", "grpo", "--threads", "0", "--out", str(tmp_path)), "--threads must be >= 1, got 0")


def test_decoder_option_reaches_the_preset_and_a_static_decoder_is_named_in_the_header(tmp_path, tokenizer):
    from sgcd_bench.presets import PresetError, get_preset, with_overrides

    assert with_overrides(get_preset("cpu"), decoder="static").decoder == "static"
    with pytest.raises(PresetError, match="--decoder must be one of auto, eager, static"):
        with_overrides(get_preset("cpu"), decoder="graph")
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    result = invoke("eval", "--model", str(model_dir), "--out", str(tmp_path / "runs"), "--max-turns", "1",
                    "--max-new-tokens", "3", "--eval-tasks", "2", "--env", "tiny-shop", "--decoder", "static")
    assert result.exit_code == 0, result.output
    assert "device cpu · decode static ·" in " ".join(result.output.split())


def test_unknown_env(tmp_path):
    one_line_error(invoke("compare", "grpo", "--env", "tau3-airlin", "--out", str(tmp_path)),
                   "Did you mean 'tau3-airline'?")


def test_half_an_llm_endpoint(tmp_path):
    one_line_error(invoke("compare", "sgcd", "--summarizer-base-url", "http://127.0.0.1:9/v1", "--out",
                          str(tmp_path)), "go together")


def test_leaderboard_without_results(tmp_path):
    one_line_error(invoke("leaderboard", "--out", str(tmp_path)), "no results")


def test_envs_lists_tau3():
    result = invoke("envs")
    assert result.exit_code == 0 and "sgcd_envs/Tau3Airline-v0" in result.output


def test_compare_end_to_end_with_a_tiny_model(tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    out = tmp_path / "runs"
    result = invoke("compare", "grpo", "sgcd", "sdpo", "--model", str(model_dir), "--out", str(out),
                    "--steps", "1", "--group-size", "2", "--max-turns", "1", "--max-new-tokens", "3",
                    "--eval-tasks", "2", "--rollout-batch-groups", "1", "--env", "tau3-airline", "--prompt", "compact",
                    "--no-warm-start")
    assert result.exit_code == 0, result.output
    assert "rollouts 1 group(s) at a time" in result.output
    assert "leaderboard" in result.output and "baseline" in result.output and "reference" in result.output
    export = tmp_path / "board.json"
    listed = invoke("leaderboard", "--out", str(out), "--export", str(export))
    assert listed.exit_code == 0, listed.output
    rows = json.loads(export.read_text())
    text = json.dumps(rows)
    for method in ("grpo", "sgcd", "sdpo", "do-nothing"):
        assert f'"{method}"' in text


def test_compare_runs_on_the_dual_control_telecom_env_and_its_board_joins_the_tau_family(tmp_path, tokenizer):
    """``--env tau2-telecom`` through the whole compare path (rollouts with the stand-in user on the
    user's phone, the three methods, evaluation, the leaderboard): its table is titled τ²-telecom
    and marks the stand-in user."""
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    result = invoke("compare", "grpo", "sgcd", "sdpo", "--model", str(model_dir), "--out", str(tmp_path / "runs"),
                    "--steps", "1", "--group-size", "2", "--max-turns", "2", "--max-new-tokens", "3",
                    "--eval-tasks", "2", "--rollout-batch-groups", "1", "--env", "tau2-telecom", "--prompt", "compact",
                    "--no-warm-start")
    assert result.exit_code == 0, result.output
    assert "env sgcd_envs/Tau2Telecom-v0" in result.output and "user: scripted" in result.output
    assert "τ²-telecom" in result.output and "baseline" in result.output


def test_eval_prints_only_what_it_uses(tmp_path, tokenizer):
    """`eval` trains nothing: its header has no training line (steps, groups, optimizer, dynamic
    sampling), only the model, env, prompt, threads, the eval sizes and the user; its leaderboard
    row says what it measured (run id, tasks × trials) and that it trained no steps."""
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    result = invoke("eval", "--model", str(model_dir), "--out", str(tmp_path / "runs"), "--max-turns", "1",
                    "--max-new-tokens", "3", "--eval-tasks", "2", "--env", "tau3-airline", "--prompt", "compact")
    assert result.exit_code == 0, result.output
    header, _, board = result.output.partition("leaderboard (")
    assert not any(line.strip().startswith("train:") for line in header.splitlines()), header
    for gone in ("steps ×", "dynamic sampling", "β_KL", "lr ", "summarizer"):
        assert gone not in header, (gone, header)
    assert f"model {model_dir}" in header and "env sgcd_envs/Tau3Airline-v0" in header
    assert "torch threads 2" in header and "prompt compact (stand-in)" in header
    assert "  eval: test split, 2 tasks × 1 trial(s), temperature 0, ≤1 turns × 3 tokens" in header
    assert "user: scripted" in header
    row = next(line for line in board.splitlines() if "│ eval" in line)
    assert "│ #1 " in row and "│ 2×1 │" in " ".join(row.split()) and "│ — │" in " ".join(row.split()), row
