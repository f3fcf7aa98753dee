"""A fourth method added from this module alone: its local part (a ``LocalMethod``) and one
``register_method`` line. The trainer, the CLI and the stored runs take it from the registry;
no other file knows it exists.

The toy is REINFORCE with group advantages and no clip and no KL (a TEST method, not one of
the benchmark's): L = −Σ_t A_i·log π_θ(y_t) / Σ_t 1.
"""

from __future__ import annotations

import math
import sqlite3

import pytest
import torch

from adapters.local.methods import LocalMethod, UpdateInputs
from algorithms.registry import METHODS, MethodSpec, register_method, unregister_method

from tests.cli.helpers import invoke
from tests.local.helpers import tiny_llama
from tests.local.test_trainer import make_trainer

TOY = "reinforce-toy"


def reinforce_loss(logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L = −Σ_t A_i·logp_{i,t}·m_{i,t} / Σ m."""
    loss = -(adv[:, None] * logp * mask).sum() / mask.sum().clamp(min=1)
    return loss, {"pg_loss": float(loss.detach())}


class Reinforce(LocalMethod):
    losses: list[float] = []

    def loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = reinforce_loss(x.logp, x.adv, x.pmask.float())
        Reinforce.losses.append(float(loss.detach()))
        return loss, {f"loss/{k}": v for k, v in metrics.items()}


@pytest.fixture
def toy_method():
    register_method(MethodSpec(TOY, "REINFORCE without clip or KL (test method)",
                               local=f"{__name__}:Reinforce", loss_fn=reinforce_loss))
    Reinforce.losses = []
    yield TOY
    unregister_method(TOY)
    assert TOY not in METHODS


def test_the_trainer_runs_a_registered_method(toy_method, tokenizer):
    model = tiny_llama(len(tokenizer), seed=3)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(model, tokenizer, toy_method)
    assert isinstance(trainer.method, Reinforce)
    m = trainer.step().metrics
    assert m["updated"] == 1.0 and math.isfinite(m["loss/pg_loss"])
    assert Reinforce.losses == [pytest.approx(m["loss"])]  # the toy's loss is the one stepped on
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_unregistered_method_is_refused(tokenizer):
    with pytest.raises(KeyError, match=f"Unknown method '{TOY}'"):
        make_trainer(tiny_llama(len(tokenizer)), tokenizer, TOY)


def test_the_cli_compares_a_registered_method(toy_method, tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "runs"
    result = invoke("compare", "grpo", toy_method, "--model", str(model_dir), "--out", str(out), "--steps", "1",
                    "--group-size", "2", "--max-turns", "1", "--max-new-tokens", "3", "--eval-tasks", "2",
                    "--no-baseline", "--no-warm-start")
    assert result.exit_code == 0, result.output
    assert f"train {toy_method}" in result.output and toy_method in result.output.split("leaderboard")[-1]
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = dict(db.execute("SELECT method, status FROM runs").fetchall())
    assert rows == {"grpo": "finished", toy_method: "finished"}
    listed = invoke("methods")
    assert listed.exit_code == 0 and toy_method in listed.output
