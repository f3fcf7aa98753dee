"""verl 0.9.1's own trainer, end to end on the CPU: GRPO+KL, SGCD and SDPO through our plugin.

Each test runs ``python -m adapters.verl.launch --config-name {grpo,sgcd,sdpo}_fsdp`` as a user
would (through :func:`adapters.verl.cpu_run.launch_command`): Ray, TransferQueue, verl's FSDP2
engine workers on gloo (:mod:`adapters.verl.cpu_mode`), the transformers rollout server, and our
agent loop over the real τ³-airline env. The model is a tiny random Qwen2 built here; the rows go
to the CI-only contrast stand-in loop (:mod:`adapters.verl.replay_stand_in`), so every group but
task 39's mixes reward 1 (a reference replay) and 0 (a sample): these are fixture numbers, never
τ³ results. The assertions read verl's own console metrics and the rollout server's log lines.

About 2–4 minutes per run on 2 cores; the whole module runs 4 trainings (about 9 minutes).
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from verl_required import verl  # noqa: F401

from adapters.verl import cpu_run

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 900
REPORTED = ("training/global_step", "critic/score/mean", "actor/pg_loss", "actor/grad_norm",
            "sgcd/groups_with_reference", "sgcd/w_min", "sgcd/w_max", "sgcd/w_std", "sgcd/scored_records",
            "sgcd/scored_tokens", "sgcd/divergence_mean", "sdpo/frac_samples_with_teacher", "sdpo/scored_records",
            "sdpo/scored_tokens", "actor/sdpo/loss", "actor/sdpo/is_ratio_mean", "actor/sdpo/distill_per_token",
            "training/filter_groups/evicted_samples", "timing_s/gen", "timing_s/old_log_prob",
            "timing_s/sgcd_divergence", "timing_s/sdpo_teacher", "timing_s/update_actor", "timing_s/step")
"""verl metrics each run prints into the test log (CI's output shows them)."""
W_MIN, W_MAX = 0.5, 2.0  # the sgcd_fsdp defaults
PUSH = re.compile(r"\[transformers rollout\] replica (\d+): weights for global step (\d+) loaded (\d+), missing (\d+)")


@dataclass
class Run:
    log: str
    steps: dict[int, dict[str, float]]

    def pushes(self) -> dict[int, set[int]]:
        """replica → the global steps whose weights its server loaded."""
        out: dict[int, set[int]] = {}
        for replica, step, loaded, missing in PUSH.findall(self.log):
            assert int(loaded) > 0 and int(missing) == 0, f"incomplete weight push: loaded {loaded}, missing {missing}"
            out.setdefault(int(replica), set()).add(int(step))
        return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verl-cpu")
    cpu_run.build_tiny_model(root / "model")
    cpu_run.write_rows(root / "train.parquet")
    return root


def report(tag: str, run: Run, terminal) -> None:
    """Print verl's key metrics of each step and the weight pushes (shown even when the test passes)."""
    with terminal.disabled():
        for step, metrics in sorted(run.steps.items()):
            shown = " - ".join(f"{k}:{metrics[k]:.4g}" for k in REPORTED if k in metrics)
            print(f"\n[verl e2e {tag}] step:{step} - {shown}", end="")
        pushes = {r: sorted(s) for r, s in sorted(run.pushes().items())}
        print(f"\n[verl e2e {tag}] weights loaded by the rollout server (replica: global steps): {pushes}")
        for key, what in (("timing_s/sgcd_divergence", "SGCD's divergence"), ("timing_s/sdpo_teacher", "SDPO's teacher bins")):
            for step, m in sorted(run.steps.items()):
                if key in m:  # the step without the method's own work is the GRPO step on the same batch
                    print(f"[verl e2e {tag}] step {step}: {what} {m[key]:.2f} s of a {m['timing_s/step']:.2f} s step "
                          f"= step / (step - it) {m['timing_s/step'] / (m['timing_s/step'] - m[key]):.2f}")


def train(workdir: Path, method: str, tag: str, *extra: str, steps: int = 2, dp: int = 1,
          checkpoint_dir: Path | None = None, terminal=None) -> Run:
    """One CPU training run of ``method``; fails with the log's tail unless it exits 0."""
    cmd = cpu_run.launch_command(method, workdir / "model", workdir / "train.parquet", steps=steps, num_workers=dp,
                                 checkpoint_dir=checkpoint_dir or workdir / "ckpt" / tag, extra=list(extra))
    log_file = workdir / f"{tag}.log"
    with log_file.open("w") as sink:
        proc = subprocess.run(cmd, env=cpu_run.run_env(), stdout=sink, stderr=subprocess.STDOUT,
                              timeout=RUN_TIMEOUT_S, cwd=workdir)
    log = log_file.read_text(errors="replace")
    assert proc.returncode == 0, f"{method} run exited {proc.returncode}; log tail:\n{log[-6000:]}"
    run = Run(log, cpu_run.parse_step_metrics(log))
    if terminal is not None:
        report(tag, run, terminal)
    return run


def assert_trained(run: Run, steps: range, replicas: int = 1) -> None:
    assert sorted(run.steps) == list(steps), f"verl logged steps {sorted(run.steps)}"
    for step in steps:
        m = run.steps[step]
        assert m["training/global_step"] == step
        for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean"):
            assert math.isfinite(m[key]), (step, key, m[key])
        assert 0.0 <= m["critic/score/mean"] <= 1.0
    pushes = run.pushes()
    assert sorted(pushes) == list(range(replicas)), pushes
    for replica, pushed in pushes.items():  # the rollout server got the trainer's weights after every step
        assert set(steps) <= pushed, f"replica {replica} loaded weights of steps {sorted(pushed)}"


def test_grpo_trains_two_steps_with_data_parallel_two_on_gloo(workdir, capsys):
    run = train(workdir, "grpo", "grpo-dp2", dp=2, terminal=capsys)
    assert_trained(run, range(1, 3), replicas=2)
    # the stand-in's mixed groups give GRPO a non-zero signal
    assert any(m["critic/score/max"] == 1.0 and m["critic/score/min"] == 0.0 for m in run.steps.values())
    assert any(m["actor/grad_norm"] > 0 for m in run.steps.values())


def test_sgcd_trains_with_credit_weights_and_dynamic_sampling_then_resumes(workdir, capsys):
    ckpt = workdir / "ckpt" / "sgcd"
    run = train(workdir, "sgcd", "sgcd", "trainer.save_freq=1", checkpoint_dir=ckpt, terminal=capsys)
    assert_trained(run, range(1, 3))
    with_reference = [m for m in run.steps.values() if m["sgcd/groups_with_reference"] >= 1]
    assert with_reference, "no group got a credit reference"
    for m in with_reference:
        assert W_MIN - 1e-6 <= m["sgcd/w_min"] <= m["sgcd/w_max"] <= W_MAX + 1e-6, m
        assert m["sgcd/w_std"] > 0 and (m["sgcd/w_min"] < 1.0 < m["sgcd/w_max"]), "credit weights are all 1"
        assert m["sgcd/summarizer_failures"] == 0
        # the exact estimator ran: (student, teacher) records scored in the actor, a divergence > 0
        assert m["sgcd/scored_records"] >= 2 and m["sgcd/divergence_mean"] > 0, m
    # task 39's all-zero group is evicted by dynamic sampling (algorithm.filter_groups, on in every config)
    evicted = sum(v for m in run.steps.values() for k, v in m.items() if k.endswith("filter_groups/evicted_samples"))
    assert evicted > 0, "dynamic sampling evicted nothing"
    assert (ckpt / "global_step_2").is_dir(), sorted(p.name for p in ckpt.iterdir())

    resumed = train(workdir, "sgcd", "sgcd-resume", "trainer.save_freq=1", steps=3, checkpoint_dir=ckpt,
                    terminal=capsys)
    assert sorted(resumed.steps) == [3], f"resume ran steps {sorted(resumed.steps)}, expected only step 3"
    assert "global_step_2" in resumed.log  # verl names the checkpoint it resumed from
    assert math.isfinite(resumed.steps[3]["actor/pg_loss"])
    assert 3 in resumed.pushes()[0]


def test_sdpo_trains_two_steps_on_distilled_samples(workdir, capsys):
    run = train(workdir, "sdpo", "sdpo", terminal=capsys)
    assert_trained(run, range(1, 3))
    for m in run.steps.values():
        assert 0.0 < m["sdpo/frac_samples_with_teacher"] <= 1.0, m["sdpo/frac_samples_with_teacher"]
        assert math.isfinite(m["actor/pg_loss"]) and math.isfinite(m["actor/sdpo/loss"])
        # the top-k JSD ran: pair records scored in the actor, a divergence over distilled tokens
        assert m["sdpo/scored_records"] >= 2 and m["actor/sdpo/distill_per_token"] > 0, m
