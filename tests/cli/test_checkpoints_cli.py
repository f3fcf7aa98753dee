"""Checkpoints, resume and dead runs through the real `sgcd-bench train` (issue 18, item 1).

A real subprocess trains a tiny model on tiny shop and is signalled mid-run (SIGINT, SIGTERM,
SIGKILL); the checkpoint it leaves is resumed through the CLI into the same stored run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaderboards.store import ResultStore
from sgcd_bench.checkpoints import Checkpoint, mismatches
from tests.cli.helpers import invoke, one_line_error, only_an_error_line, tiny_model_dir

SIZES = ("--env", "tiny-shop", "--no-warm-start", "--group-size", "2", "--groups-per-batch", "1",
         "--max-turns", "1", "--max-new-tokens", "3", "--eval-tasks", "2", "--threads", "1")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model_dir(folder, tokenizer)
    return folder


def train_args(model_dir: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "grpo", "--model", str(model_dir), "--out", str(out), "--steps", str(steps), *SIZES, *extra]


def stored_steps(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM train_steps").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        con.close()


def train_until(model_dir: Path, out: Path, steps_stored: int, *extra: str) -> subprocess.Popen:
    """`sgcd-bench train` in a real subprocess, returned once it has stored ``steps_stored`` steps."""
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    cli = Path(sys.executable).with_name("sgcd-bench")  # the installed console script
    # as from a terminal: a test runner started in the background inherits SIGINT ignored
    proc = subprocess.Popen([str(cli), *train_args(model_dir, out, 200, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while stored_steps(out / "results.sqlite") < steps_stored:
        if proc.poll() is not None:
            raise AssertionError(f"train exited early ({proc.returncode}): {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no training step stored within 300 s")
        time.sleep(0.2)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_training_leaves_a_checkpoint_and_resume_finishes_the_same_run(model_dir, tmp_path, signum):
    out = tmp_path / "runs"
    proc = train_until(model_dir, out, 2, "--save-checkpoint")
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "interrupted: finished steps and results are kept" in output and "Traceback" not in output
    with ResultStore(out / "results.sqlite") as store:
        [run] = store.runs()
        stopped_at = len(store.steps(run.id))
        assert run.status == "failed" and "--resume" in run.flags["interrupted"], run.flags
    assert stopped_at >= 2
    folder = out / "checkpoints" / f"run_{run.id:04d}"
    [step_dir] = list(folder.iterdir())  # the newest only
    meta = json.loads((step_dir / "checkpoint.json").read_text())
    assert step_dir.name == f"step_{stopped_at:06d}" and meta["step"] == stopped_at  # at a step boundary
    assert (meta["run_id"], meta["method"], meta["config"]["loop"]["steps"]) == (run.id, "grpo", 200)
    assert meta["model"]["name"] == str(model_dir) and meta["model"]["parameters"] > 0

    target = stopped_at + 2
    resumed = invoke(*train_args(model_dir, out, target, "--resume", str(folder)))
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming run #{run.id} (grpo) at step {stopped_at} of {target}" in resumed.output
    with ResultStore(out / "results.sqlite") as store:
        [again] = store.runs()  # the same row, not a second one
        assert again.id == run.id and again.status == "finished"
        assert "interrupted" not in again.flags
        assert [s.step for s in store.steps(run.id)] == list(range(1, target + 1))
        assert [e.step for e in store.evaluations(run.id)] == [target]
        assert again.config["loop"]["steps"] == target
    assert [p.name for p in folder.iterdir()] == [f"step_{target:06d}"]

    done = invoke(*train_args(model_dir, out, target, "--resume", str(folder)))
    one_line_error(done, f"already trained to step {target} and evaluated")


def test_sigkill_leaves_a_run_that_the_next_command_marks_as_dead(model_dir, tmp_path):
    out = tmp_path / "runs"
    proc = train_until(model_dir, out, 1)
    proc.kill()
    proc.communicate(timeout=60)  # reaped: a zombie would still answer kill(pid, 0)
    listed = invoke("leaderboard", "--out", str(out))
    assert f"run #1 (grpo) died: process {proc.pid} ended without closing the run" in listed.output, listed.output
    with ResultStore(out / "results.sqlite") as store:
        [run] = store.runs()
        assert run.status == "failed" and "finished step(s)" in run.flags["died"]
        assert len(store.steps(run.id)) >= 1  # its finished steps are kept


@pytest.fixture(scope="module")
def checkpoint(model_dir, tmp_path_factory) -> Path:
    """A finished 1-step grpo run with its checkpoint."""
    out = tmp_path_factory.mktemp("done") / "runs"
    result = invoke(*train_args(model_dir, out, 1, "--save-checkpoint"))
    assert result.exit_code == 0, result.output
    return out / "checkpoints" / "run_0001"


def test_resume_with_another_method_is_one_line_before_the_model_loads(model_dir, checkpoint, tmp_path):
    result = invoke("train", "sgcd", "--model", str(model_dir), "--out", str(tmp_path), "--resume", str(checkpoint),
                    *SIZES)
    only_an_error_line(result, "the checkpoint is of method grpo, not sgcd", "sgcd-bench train grpo --resume")


def test_resume_with_another_learning_rate_says_what_differs(model_dir, checkpoint):
    result = invoke(*train_args(model_dir, checkpoint.parent.parent, 3, "--lr", "0.001", "--resume", str(checkpoint)))
    one_line_error(result, "does not match this run", "grpo.lr: 1e-05 ≠ 0.001")


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_old_value(tmp_path):
    """A setting added later (``SETTINGS_ADDED``) is absent from an older checkpoint's config: it
    reads as the value every run had then, so only a run that asks for another value differs."""
    config = {"probe_tasks": 10, "probe_samples": 0, "grpo": {"lr": 1e-5}}
    older = Checkpoint(tmp_path, 1, {"method": "grpo", "config": {"probe_tasks": 10, "grpo": {"lr": 1e-5}}})
    assert mismatches(older, method="grpo", model={}, config=config) == []
    assert mismatches(older, method="grpo", model={}, config={**config, "probe_samples": 2}) == [
        "probe_samples: 0 ≠ 2"]


def test_resume_with_another_model_says_so(model_dir, checkpoint, tmp_path, tokenizer):
    other = tmp_path / "other-model"
    tiny_model_dir(other, tokenizer)
    result = invoke(*train_args(other, checkpoint.parent.parent, 3, "--resume", str(checkpoint)))
    one_line_error(result, "does not match this run", f"model name: {model_dir} ≠ {other}")


def test_resume_from_an_empty_folder_or_a_file_is_one_line(model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_an_error_line(invoke(*train_args(model_dir, tmp_path, 3, "--resume", str(empty))), "no checkpoint in it")
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    only_an_error_line(invoke(*train_args(model_dir, tmp_path, 3, "--resume", str(afile))), "not a folder")
    only_an_error_line(invoke(*train_args(model_dir, tmp_path, 3, "--resume", str(tmp_path / "nope"))),
                       "no such folder")


def test_two_runs_keep_their_own_checkpoints(model_dir, checkpoint):
    out = checkpoint.parent.parent
    result = invoke(*train_args(model_dir, out, 1, "--save-checkpoint"))
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert runs[:2] == ["run_0001", "run_0002"]
    first = json.loads((checkpoint / "step_000001" / "checkpoint.json").read_text())
    assert first["run_id"] == 1  # not overwritten by the second run


def test_a_store_failure_after_training_keeps_the_model(model_dir, tmp_path, monkeypatch):
    """The checkpoint is written before the evaluation is stored: a store error there loses nothing."""
    from leaderboards.store import StoreError

    def broken(self, *args, **kwargs):
        raise StoreError("the disk is full (simulated)")
    monkeypatch.setattr(ResultStore, "record_evaluation", broken)
    out = tmp_path / "runs"
    result = invoke(*train_args(model_dir, out, 2, "--save-checkpoint"))
    one_line_error(result, "the disk is full (simulated)")
    meta = json.loads((out / "checkpoints" / "run_0001" / "step_000002" / "checkpoint.json").read_text())
    assert meta["step"] == 2 and (out / "checkpoints" / "run_0001" / "step_000002" / "trainer.pt").is_file()
