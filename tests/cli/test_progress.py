"""What a run shows while it works (issue 18, item 6): plain lines when piped, the ETA."""

from __future__ import annotations

import io

from rich.console import Console

from adapters.local.rollout import RolloutProgress
from sgcd_bench.progress import Display, clock, eta_s
from tests.cli.helpers import invoke, tiny_model_dir


def test_eta_is_the_mean_step_time_times_the_steps_left_minus_the_running_step():
    assert eta_s(elapsed_s=120.0, steps_done=2, steps_total=5, in_step_s=20.0) == 160.0
    assert eta_s(elapsed_s=0.0, steps_done=0, steps_total=5, in_step_s=3.0) is None  # nothing to go on yet
    assert eta_s(elapsed_s=10.0, steps_done=1, steps_total=2, in_step_s=60.0) == 0.0
    assert clock(3725.4) == "1:02:05"


def test_piped_progress_is_one_plain_line_per_step_and_per_quarter_of_an_evaluation():
    out = io.StringIO()
    display = Display(Console(file=out, width=200, force_terminal=False))
    with display.shown():
        bar = display.training("grpo", steps=2)
        bar.rollout(RolloutProgress(3, 8, 1, 6, 1.0))  # a terminal would show it; a log need not
        bar.step("16 episodes · reward 0.50")
        bar.step("16 episodes · reward 0.62")
        evaluation = display.evaluation("grpo", "test")
        for done in range(21):
            evaluation.rollout(RolloutProgress(done, 20, done // 4, 6, float(done)))
        evaluation.finished(20, 0.45)
    lines = out.getvalue().splitlines()
    assert [ln.split(" · ")[0] for ln in lines] == [
        "train grpo step 1/2", "train grpo step 2/2",
        "eval  grpo 5/20 episodes ended", "eval  grpo 10/20 episodes ended", "eval  grpo 15/20 episodes ended",
        "eval  grpo 20/20 episodes"]
    assert "reward 0.50" in lines[0] and "ETA 0:00:00" in lines[0]  # one of two steps done, the other timed
    assert lines[-1].endswith("pass@1 0.450")


def test_a_piped_train_shows_each_step_as_it_ends(tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    result = invoke("train", "grpo", "--model", str(model_dir), "--out", str(tmp_path / "runs"), "--steps", "2",
                    "--env", "tiny-shop", "--no-warm-start", "--group-size", "2", "--groups-per-batch", "1",
                    "--max-turns", "1", "--max-new-tokens", "3", "--eval-tasks", "2", "--threads", "1")
    assert result.exit_code == 0, result.output
    steps = [ln for ln in result.output.splitlines() if ln.startswith("train grpo step")]
    assert [ln.split(" · ")[0] for ln in steps] == ["train grpo step 1/2", "train grpo step 2/2"]
    assert all("episodes" in ln and "reward" in ln and "ETA" in ln for ln in steps), steps
    assert any(ln.startswith("eval  grpo 2/2 episodes") for ln in result.output.splitlines()), result.output
