"""Warm start by behaviour cloning on reference trajectories (the SFT stage of SFT → RL).

Demonstrations are real episodes: an env's ``reference_turns`` (the raw assistant texts that solve
a task, registered with the env) are replayed through the env by
:meth:`~adapters.local.rollout.RolloutEngine.replay`, so they hold exactly the tokens, loss mask
and env record a rollout would hold had the policy written those texts. A replay whose reward is
below 1 is dropped and counted (a demonstration must solve its task). The loss is the negative
log-likelihood of the assistant tokens only,

    L(θ) = −(1/|M|) Σ_{t ∈ M} log π_θ(y_t | s_t),   M = generated (assistant) tokens,

computed through the same prefix-cached forward as the RL losses (``forward.generated_hidden``),
minimised with AdamW over shuffled mini-batches of episodes. Ours; the warm start itself is the
standard first stage of agent-RL recipes (e.g. SFT → GRPO on τ²).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .forward import collate, generated_hidden, token_logp
from .rollout import Episode, RolloutEngine


@dataclass(frozen=True)
class SFTSettings:
    """Sizes of a warm start."""

    demos: int = 48
    """Training tasks whose reference trajectories are cloned."""
    held_out: int = 8
    """Further tasks whose demonstrations only measure the loss (never trained on)."""
    epochs: int = 3
    lr: float = 3e-4
    """AdamW learning rate (ours: a few hundred updates of a 135M model)."""
    batch_episodes: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("demos", "epochs", "batch_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SFTSettings.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.held_out, int) or self.held_out < 0:
            raise ValueError(f"SFTSettings.held_out must be an integer >= 0, got {self.held_out!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"SFTSettings.lr must be > 0, got {self.lr!r}")


@dataclass
class SFTReport:
    """What a warm start did."""

    demos: int
    held_out: int
    dropped: int
    """Replays that did not score 1 (not used)."""
    epoch_losses: list[float] = field(default_factory=list)
    held_out_before: float | None = None
    held_out_after: float | None = None
    tokens: int = 0
    """Assistant tokens per epoch."""
    seconds: float = 0.0
    train_success: float | None = None
    """Success rate of the cloned policy on sampled train tasks at the rollout temperature."""


def fits(engine: RolloutEngine, turns: Sequence[str]) -> bool:
    """Whether the policy could write ``turns`` within the engine's budgets (turns, and tokens
    per turn including the stop token)."""
    return len(turns) <= engine.max_turns and all(
        len(engine.renderer.encode(text)) + 1 <= engine.max_new_tokens for text in turns)


def demonstrations(engine: RolloutEngine, task_ids: Sequence[str], turns_of: Callable[[str], list[str]]
                   ) -> tuple[list[Episode], int]:
    """The replayed reference episodes of ``task_ids`` that fit the budgets and score 1, and how
    many did not (a clone of what the policy cannot write, or of a failure, teaches nothing useful)."""
    kept, dropped = [], 0
    for task_id in task_ids:
        turns = turns_of(task_id)
        ep = engine.replay(task_id, turns) if fits(engine, turns) else None
        if ep is not None and ep.reward >= 1.0:
            kept.append(ep)
        else:
            dropped += 1
    return kept, dropped


def clone_loss(model: torch.nn.Module, prefix_ids: Sequence[int], episodes: Sequence[Episode], *,
               pad_id: int) -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood of the episodes' assistant tokens (with grad) and their count."""
    device = next(model.parameters()).device
    batch = collate(episodes, pad_id=pad_id, device=device)
    hidden = generated_hidden(model, [list(prefix_ids)] * len(episodes), batch, grad=torch.is_grad_enabled())
    logp = token_logp(model, hidden, batch.targets[batch.mask])
    return -logp.mean(), int(logp.numel())


def held_out_loss(model: torch.nn.Module, prefix_ids: Sequence[int], episodes: Sequence[Episode], *,
                  pad_id: int, batch_episodes: int) -> float | None:
    """Token-weighted NLL over ``episodes`` without grad (None when there are none)."""
    if not episodes:
        return None
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(episodes), batch_episodes):
            loss, n = clone_loss(model, prefix_ids, episodes[start:start + batch_episodes], pad_id=pad_id)
            total, count = total + float(loss) * n, count + n
    return total / max(count, 1)


def behaviour_clone(model: torch.nn.Module, engine: RolloutEngine, train: Sequence[Episode],
                    held_out: Sequence[Episode], settings: SFTSettings,
                    on_epoch: Callable[[int, float], None] | None = None) -> SFTReport:
    """Train ``model`` in place on ``train``; the held-out loss before and after."""
    if not train:
        raise ValueError("behaviour_clone: no demonstration scored 1; nothing to clone")
    started = time.perf_counter()
    prefix, pad = engine.renderer.prefix_ids, engine.pad_id
    report = SFTReport(len(train), len(held_out), 0)
    report.held_out_before = held_out_loss(model, prefix, held_out, pad_id=pad, batch_episodes=settings.batch_episodes)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        total, tokens = 0.0, 0
        for start in range(0, len(order), settings.batch_episodes):
            chunk = [train[i] for i in order[start:start + settings.batch_episodes]]
            optimizer.zero_grad(set_to_none=True)
            loss, n = clone_loss(model, prefix, chunk, pad_id=pad)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, tokens = total + float(loss.detach()) * n, tokens + n
        report.epoch_losses.append(total / max(tokens, 1))
        report.tokens = tokens
        if on_epoch is not None:
            on_epoch(epoch + 1, report.epoch_losses[-1])
    model.eval()
    report.held_out_after = held_out_loss(model, prefix, held_out, pad_id=pad, batch_episodes=settings.batch_episodes)
    report.seconds = time.perf_counter() - started
    return report


def warm_start_key(model_name: str, env_id: str, settings: SFTSettings, prompt_text: str) -> str:
    """Cache key of a warm-started model: what it was cloned from, on what, how (16 hex digits)."""
    blob = json.dumps({"model": model_name, "env": env_id, "settings": asdict(settings),
                       "prompt": hashlib.sha256(prompt_text.encode()).hexdigest(), "version": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_warm_start(model: torch.nn.Module, tokenizer: object, target: Path, report: SFTReport) -> Path:
    """Write the model, tokenizer and report to ``target`` atomically (temp folder + rename)."""
    staging = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "sft_report.json").write_text(json.dumps(asdict(report), indent=2))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def read_report(folder: Path) -> SFTReport | None:
    """The report saved with a warm start, if any."""
    path = Path(folder) / "sft_report.json"
    return SFTReport(**json.loads(path.read_text())) if path.is_file() else None
