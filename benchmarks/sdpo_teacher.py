"""What SDPO's teacher being π_old (the verl path) instead of an EMA (the reference code) changes.

verl 0.9.1 offers no second weight copy that follows the actor, so SDPO on verl distils from π_old
(the weights that sampled the batch: the reference code's ``teacher_update_rate = 1``); the local
trainer, like lasgroup/SDPO, keeps an EMA teacher (rate 0.05). This measures the difference in
the local trainer on the SAME batch, rolled out once and trained on for ``--steps`` steps:

* along the EMA run, at every step, the update the EMA teacher gives and the update π_old would
  give from the same weights and optimizer state: the SDPO loss of each, the cosine between the
  two parameter updates and their relative difference;
* a second run whose teacher is π_old throughout (``ema_rate = 1``): its SDPO loss per step.

At step 1 the two teachers are the same weights (the EMA starts at the policy), so the first row
is a check (cosine 1). Rewards are assigned alternately (1, 0, 1, 0, …), a MEASUREMENT STAND-IN so
that every group has a successful sibling to demonstrate; the numbers describe the two teachers
on this batch, not a benchmark result.

    python benchmarks/sdpo_teacher.py                    # CPU, embedded SmolLM2-135M
    python benchmarks/sdpo_teacher.py --steps 6 --lr 1e-5 --tasks 2 --group-size 4
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from adapters.local.model import load_model  # noqa: E402
from adapters.local.trainer import LocalTrainer, LoopSettings  # noqa: E402
from algorithms.config import DynamicSamplingConfig, GRPOConfig, SDPOConfig  # noqa: E402
from benchmarks._tau3 import tau3_engine  # noqa: E402


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    """All trainable parameters as one float64 vector (sums over 10⁸ entries stay exact enough)."""
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters() if p.requires_grad])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def trainer_for(model, tokenizer, engine, task_ids, args, ema_rate: float) -> LocalTrainer:
    return LocalTrainer(copy.deepcopy(model), tokenizer, engine, method="sdpo",
                        loop=LoopSettings(steps=args.steps, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens),
                        grpo_cfg=GRPOConfig(group_size=args.group_size, lr=args.lr),
                        sampling_cfg=DynamicSamplingConfig(groups_per_batch=args.tasks),
                        configs=(SDPOConfig(ema_rate=ema_rate),), task_pool=task_ids)


def update_with_pi_old(trainer: LocalTrainer, episodes) -> tuple[torch.Tensor, float]:
    """The update a π_old teacher gives from ``trainer``'s state (on a copy): (Δθ, SDPO loss)."""
    other = copy.deepcopy(trainer)
    other.method.teacher.model.load_state_dict(other.model.state_dict())
    before = flat_params(other.model)
    metrics = other.update(episodes)
    return flat_params(other.model) - before, metrics["loss/sdpo/loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--tasks", type=int, default=2, help="groups in the batch")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set deliberately on small machines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    loaded = load_model(None, device="cpu")
    engine, task_ids = tau3_engine(loaded.model, loaded.tokenizer, tasks=args.tasks, max_turns=args.max_turns,
                                   max_new_tokens=args.max_new_tokens, prompt="compact")
    episodes, _ = engine.run(task_ids, args.group_size, seed=0)
    for i, ep in enumerate(episodes):
        ep.reward = float(i % 2 == 0)  # measurement stand-in: every group mixed
    print(f"SmolLM2-135M (embedded), {len(episodes)} episodes in {args.tasks} groups, "
          f"{sum(ep.generated_tokens for ep in episodes)} generated tokens; lr {args.lr}; rewards alternate "
          "(measurement stand-in)")

    ema = trainer_for(loaded.model, loaded.tokenizer, engine, task_ids, args, ema_rate=0.05)
    pi_old = trainer_for(loaded.model, loaded.tokenizer, engine, task_ids, args, ema_rate=1.0)
    print(f"{'step':>4} {'loss EMA':>10} {'loss π_old':>11} {'cos(Δθ)':>8} {'|ΔΔθ|/|Δθ|':>11} "
          f"{'π_old run loss':>15}")
    for step in range(1, args.steps + 1):
        delta_old, loss_old = update_with_pi_old(ema, episodes)
        before = flat_params(ema.model)
        loss_ema = ema.update(episodes)["loss/sdpo/loss"]
        delta_ema = flat_params(ema.model) - before
        cos = cosine(delta_ema, delta_old)
        rel = float((delta_ema - delta_old).norm() / delta_ema.norm())
        run_loss = pi_old.update(episodes)["loss/sdpo/loss"]
        print(f"{step:4d} {loss_ema:10.5f} {loss_old:11.5f} {cos:8.4f} {rel:11.4f} {run_loss:15.5f}")
    drift = float((flat_params(ema.model) - flat_params(pi_old.model)).norm() / flat_params(loaded.model).norm())
    print(f"after {args.steps} steps: |θ_EMA-run − θ_π_old-run| / |θ_0| = {drift:.2e}")


if __name__ == "__main__":
    main()
