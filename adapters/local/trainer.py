"""The local single-process trainer: GRPO+KL, SGCD, SDPO (any registered method) on one CPU or GPU.

One training step (SPEC §3) is :meth:`LocalTrainer.step` + :meth:`LocalTrainer.update`, every
formula taken from ``algorithms``:

1. rollout G siblings × B tasks (``RolloutEngine``; shared-prefix KV cache);
2. dynamic sampling: keep groups with mixed rewards, draw more tasks up to a round limit
   (``algorithms.sampling``), identical for every method so comparisons stay matched;
3. GRPO advantages (``algorithms.grpo.group_advantages``);
4. the method's signal (``method.prepare``: SGCD's credit references, SDPO's demonstrations);
5. per micro-batch of whole groups: student + reference forward, the method's loss, backward;
6. clip, AdamW step, ``method.after_step()`` (EMA teachers).

The method is looked up in ``algorithms.registry.METHODS`` and its part lives in
``adapters.local.methods.<name>``. Single PPO epoch on fresh rollouts, so ``old_logp`` is the
detached current log-prob (ρ = 1 at the update, as in on-policy GRPO); the clip still bounds the
gradient.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from algorithms import grpo, sampling
from algorithms.config import DynamicSamplingConfig, GRPOConfig
from sgcd_common.signals import deferred_interrupts

from .forward import collate, enable_activation_checkpointing, generated_hidden, pack, token_logp
from .methods import LocalMethod, MethodContext, Signal, UpdateInputs, build_method, frozen_copy
from .rollout import Episode, RolloutEngine


@dataclass(frozen=True)
class LoopSettings:
    """Sizes of the local loop that no method config holds (G, lr, clip, B and resampling live
    in ``GRPOConfig`` and ``DynamicSamplingConfig``)."""

    steps: int = 2
    """Optimizer steps."""
    max_turns: int = 3
    """Agent turns per episode; an episode still running after them is cut (reward 0)."""
    max_new_tokens: int = 48
    """Tokens per agent turn."""
    temperature: float = 1.0
    """Rollout sampling temperature (SPEC §3.1: 1)."""
    weight_decay: float = 0.0
    """AdamW weight decay (ours)."""
    micro_batch_groups: int | None = None
    """Groups per forward/backward pass; gradients accumulate over the batch's micro-batches
    with whole-batch loss denominators, so the update equals the one-pass update. None = one pass."""
    activation_checkpointing: bool = False
    """Keep only each decoder layer's inputs in the training forward and recompute the rest in
    the backward pass (transformers' activation checkpointing): activation memory drops from
    layers × tokens × (all intermediates) to layers × tokens × hidden, for about one more
    forward of compute. The update is unchanged."""
    rollout_batch_groups: int | None = None
    """Groups sampled together in one lockstep rollout batch (the rest wait their turn); bounds
    the rollout's KV cache, rows × context. None = all groups of a round at once."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "max_turns", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LoopSettings.{name} must be a positive integer, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"LoopSettings.temperature must be > 0 for training rollouts, got {self.temperature!r}")
        for name in ("micro_batch_groups", "rollout_batch_groups"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"LoopSettings.{name} must be None or >= 1, got {value!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"LoopSettings.weight_decay must be >= 0, got {self.weight_decay!r}")


@dataclass
class StepResult:
    """What one training step did: metrics (floats) and the episodes it trained on."""

    step: int
    metrics: dict[str, float]
    episodes: list[Episode] = field(default_factory=list)
    """The kept (mixed-group) episodes the update trained on."""
    rollouts: list[Episode] = field(default_factory=list)
    """Every episode rolled out this step, kept or dropped (for monitoring)."""
    probe: list[Episode] = field(default_factory=list)
    """The probe episodes that rode in the step's first rollout batch (greedy, or sampled with
    fixed random numbers): the policy that rolled the step out, before its update (empty without
    a probe). Never trained on."""


def rollout_rewards(episodes: Sequence[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = torch.tensor([ep.reward for ep in episodes], dtype=torch.float32)
    groups = torch.tensor([ep.group for ep in episodes], dtype=torch.long)
    return rewards, groups


class LocalTrainer:
    """Owns the policy, the frozen reference, the optimizer and the method's part of the step."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        engine: RolloutEngine,
        *,
        method: str,
        loop: LoopSettings,
        grpo_cfg: GRPOConfig,
        sampling_cfg: DynamicSamplingConfig,
        configs: Sequence[object] = (),
        summarizer: Any = None,
        task_pool: Sequence[str],
    ) -> None:
        """``configs``: settings objects to choose the method's own from (``MethodSpec.config``,
        e.g. an ``SGCDConfig``); absent, the method runs on its defaults."""
        if not task_pool:
            raise ValueError("task_pool is empty: no training tasks")
        self.model, self.tokenizer, self.engine = model, tokenizer, engine
        self.loop, self.grpo_cfg, self.sampling_cfg = loop, grpo_cfg, sampling_cfg
        self.method_name = method
        self.method: LocalMethod = build_method(method, MethodContext(model, engine.renderer, grpo_cfg, summarizer,
                                                                    temperature=engine.temperature,
                                                                    pad_id=engine.pad_id),
                                                configs)
        self.task_pool = list(task_pool)
        self.ref_model = frozen_copy(model)
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=grpo_cfg.lr, weight_decay=loop.weight_decay
        )
        self.step_idx = 0
        self._task_rng = torch.Generator().manual_seed(loop.seed)
        self._next_step_rng = self._rng_state()  # what a checkpoint resumes the next step with
        if loop.activation_checkpointing:  # after the frozen copies: they never run backward
            enable_activation_checkpointing(model)

    # ------------------------------------------------------------------ rollout + sampling
    def _draw_tasks(self, n: int) -> list[str]:
        order = torch.randperm(len(self.task_pool), generator=self._task_rng).tolist()
        picks = [self.task_pool[i] for i in order]
        while len(picks) < n:
            picks += picks
        return picks[:n]

    def collect(self, probe: Sequence[str] = (), *, probe_seed: int = 0, probe_samples: int = 0
                ) -> tuple[list[Episode], list[Episode], dict[str, float], list[Episode]]:
        """Rollouts with dynamic sampling: (kept episodes of up to B mixed groups, every
        episode rolled out, statistics, the probe episodes of the ``probe`` tasks, which ride in
        the first round's batch and enter neither the update nor the statistics; see
        :meth:`RolloutEngine.run_with_probe` for ``probe_seed`` and ``probe_samples``)."""
        self.model.eval()
        kept: list[Episode] = []
        stats = {"groups_drawn": 0.0, "groups_kept": 0.0, "rollout_s": 0.0, "generated_tokens": 0.0,
                 "rollout_episodes": 0.0, "rollout_reward_mean": 0.0, "rollout_write_calls": 0.0,
                 "retokenization_mismatches": 0.0}
        all_eps: list[Episode] = []
        probed: list[Episode] = []
        rounds = 0
        groups_kept = 0
        while groups_kept < self.sampling_cfg.groups_per_batch and rounds < self.sampling_cfg.max_rounds:
            n_draw = sampling.tasks_to_draw(
                groups_kept, self.sampling_cfg.groups_per_batch,
                oversample_factor=self.sampling_cfg.oversample_factor, rounds_done=rounds,
                max_rounds=self.sampling_cfg.max_rounds,
            )
            if n_draw <= 0:
                break
            tasks = self._draw_tasks(n_draw)
            seed = self.loop.seed * 7919 + self.step_idx * 131 + rounds
            if probe and rounds == 0:
                episodes, probed, info = self.engine.run_with_probe(tasks, self.grpo_cfg.group_size, probe, seed=seed,
                                                                    probe_seed=probe_seed, probe_samples=probe_samples)
            else:
                episodes, info = self.engine.run(tasks, self.grpo_cfg.group_size, seed=seed)
            rounds += 1
            all_eps += episodes
            stats["groups_drawn"] += len(tasks)
            stats["rollout_s"] += info["rollout_s"]
            stats["generated_tokens"] += info["generated_tokens"]
            rewards, groups = rollout_rewards(episodes)
            if self.sampling_cfg.enabled:
                keep, _ = sampling.mixed_groups(rewards, groups)
            else:
                keep = torch.ones_like(rewards, dtype=torch.bool)
            new_ids = sampling.batch_group_ids(
                [episodes[i].group for i in torch.nonzero(keep).flatten().tolist()],
                room=self.sampling_cfg.groups_per_batch - groups_kept, offset=groups_kept)
            kept += [replace(ep, group=new_ids[ep.group]) for ep in episodes if ep.group in new_ids]
            groups_kept += len(new_ids)
        stats["groups_kept"] = float(groups_kept)
        stats["groups_dropped"] = stats["groups_drawn"] - groups_kept
        stats["resample_rounds"] = float(rounds)
        stats["rollout_episodes"] = float(len(all_eps))
        stats["rollout_reward_mean"] = sum(ep.reward for ep in all_eps) / max(len(all_eps), 1)
        stats["rollout_write_calls"] = sum(ep.write_calls for ep in all_eps) / max(len(all_eps), 1)
        stats["rollout_writes_done"] = sum(ep.outcome.write_calls_succeeded for ep in all_eps) / max(len(all_eps), 1)
        action = [ep for ep in all_eps if ep.category == "action"]
        if action:  # absent (not NaN) when no action task was drawn
            stats["rollout_action_success"] = sum(ep.reward for ep in action) / len(action)
        stats["retokenization_mismatches"] = float(sum(len(ep.retokenization_mismatches) for ep in all_eps))
        return kept, all_eps, stats, probed

    # ------------------------------------------------------------------ one step
    def step(self, probe: Sequence[str] = (), *, probe_seed: int = 0, probe_samples: int = 0) -> StepResult:
        """One training step; a step whose rollouts kept no mixed group makes no update.
        ``probe``: tasks to play in the step's first rollout batch (:attr:`StepResult.probe`),
        once each greedily, or ``probe_samples`` times each with fixed random numbers.

        Interrupt-safe: until the step ends the trainer's checkpointable state (model, optimizer,
        method state, :attr:`step_idx`, the RNG it resumes with) is that of the previous step,
        and the step ends in one block that Ctrl-C / SIGTERM cannot split
        (:func:`~sgcd_common.signals.deferred_interrupts`)."""
        started = time.perf_counter()
        episodes, rollouts, metrics, probed = self.collect(probe, probe_seed=probe_seed,  # 1-2: rollout + sampling
                                                           probe_samples=probe_samples)
        if episodes:
            metrics.update(self.update(episodes))
        else:
            with deferred_interrupts():
                self._end_step()
            metrics["updated"] = 0.0
        metrics["step_s"] = time.perf_counter() - started
        return StepResult(self.step_idx, metrics, episodes, rollouts, probed)

    def _end_step(self) -> None:
        self.step_idx += 1
        self._next_step_rng = self._rng_state()

    def _rng_state(self) -> dict[str, Any]:
        return {"task_rng": self._task_rng.get_state(), "torch": torch.get_rng_state(), "python": random.getstate()}

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        """Advantages, the method's signal and loss, one AdamW step on the kept episodes
        (gradients accumulated over micro-batches of whole groups); ends the step."""
        started = time.perf_counter()
        self.model.train()
        device = next(self.model.parameters()).device
        rewards, groups = rollout_rewards(episodes)
        adv, adv_metrics = grpo.group_advantages(rewards.to(device), groups.to(device),  # 3
                                                 norm_by_std=self.grpo_cfg.norm_by_std)
        signal = self.method.prepare(episodes, rewards, groups)  # 4
        chunks = micro_batches(episodes, self.loop.micro_batch_groups)
        totals = batch_totals(episodes, signal) if len(chunks) > 1 else None
        self.optimizer.zero_grad(set_to_none=True)
        loss_total, train_tokens, metrics = 0.0, 0.0, dict(signal.metrics)
        for rows in chunks:  # 5
            index = torch.tensor(rows)
            inputs = self.forward([episodes[i] for i in rows], rewards[index], groups[index],
                                  adv[index.to(device)], signal.rows(rows), totals)
            loss, chunk_metrics = self.method.loss(inputs)
            loss.backward()
            loss_total += float(loss.detach())
            train_tokens += float(inputs.pmask.sum())
            share = len(rows) / len(episodes)  # metrics: episode-weighted mean over micro-batches
            for k, v in chunk_metrics.items():
                metrics[k] = metrics.get(k, 0.0) + share * v
        with deferred_interrupts():  # the model, optimizer, teacher and step counter move together
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grpo_cfg.max_grad_norm)  # 6
            self.optimizer.step()
            self.method.after_step()
            self._end_step()
        return {**{f"adv/{k}": v for k, v in adv_metrics.items()}, **metrics, "loss": loss_total,
                "grad_norm": float(grad_norm), "updated": 1.0, "train_tokens": train_tokens,
                "micro_batches": float(len(chunks)), "update_s": time.perf_counter() - started}

    def forward(self, episodes: list[Episode], rewards: torch.Tensor, groups: torch.Tensor, adv: torch.Tensor,
                teacher_prefixes: list[list[int] | None], totals: dict[str, float] | None) -> UpdateInputs:
        """Student (with grad) and reference log-probs of one micro-batch."""
        device = adv.device
        batch = collate(episodes, pad_id=self.engine.pad_id, device=device)
        prefix = [self.engine.renderer.prefix_ids] * len(episodes)
        targets = batch.targets[batch.mask]
        hidden = generated_hidden(self.model, prefix, batch, grad=True)
        tau = self.engine.temperature
        logp, pmask = pack(token_logp(self.model, hidden, targets, temperature=tau), batch.mask)
        with torch.no_grad():
            ref_hidden = generated_hidden(self.ref_model, prefix, batch, grad=False)
            ref_logp, _ = pack(token_logp(self.ref_model, ref_hidden, targets, temperature=tau), batch.mask)
        return UpdateInputs(episodes, batch, hidden, logp, logp.detach(), ref_logp, pmask, rewards, groups, adv,
                            teacher_prefixes, totals)

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: Path, *, meta: dict[str, Any] | None = None, keep: int | None = None) -> Path:
        """Write ``directory/step_NNNNNN/``: model, optimizer, the method's state (teacher), the
        step and the RNG states the next step starts from (``trainer.pt``), and ``meta`` as
        ``checkpoint.json``; atomic (a temp folder renamed into place). ``keep``: how many of the
        newest ``step_*`` folders to leave (None = all)."""
        directory = Path(directory)
        target = directory / f"step_{self.step_idx:06d}"
        staging = directory / f".tmp_step_{self.step_idx:06d}"
        if staging.exists():  # left by a save that was killed
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        state = {"step": self.step_idx, "method": self.method_name, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "rng": self._next_step_rng, **self.method.state_dict()}
        torch.save(state, staging / "trainer.pt")
        if meta is not None:
            (staging / "checkpoint.json").write_text(json.dumps({**meta, "step": self.step_idx}, indent=1,
                                                                sort_keys=True))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        if keep is not None:
            for old in sorted(p for p in directory.glob("step_*") if p.is_dir())[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return target

    def load(self, checkpoint: Path) -> None:
        """Resume from a directory written by :meth:`save` (or the newest one inside it)."""
        checkpoint = latest_checkpoint(Path(checkpoint))
        state = torch.load(checkpoint / "trainer.pt", map_location=next(self.model.parameters()).device,
                           weights_only=False)
        if state["method"] != self.method_name:
            raise ValueError(f"checkpoint {checkpoint} was written by method {state['method']!r}, "
                             f"not {self.method_name!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        self._task_rng.set_state(rng["task_rng"])
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        self.method.load_state_dict(state)
        self.step_idx = int(state["step"])
        self._next_step_rng = self._rng_state()


def micro_batches(episodes: Sequence[Episode], groups_per_pass: int | None) -> list[list[int]]:
    """Episode indices per forward/backward pass, whole groups only (SGCD and SDPO look at
    siblings), groups in order of first appearance; None = one pass."""
    if groups_per_pass is None:
        return [list(range(len(episodes)))]
    by_group: dict[int, list[int]] = {}
    for i, ep in enumerate(episodes):
        by_group.setdefault(ep.group, []).append(i)
    groups = list(by_group.values())
    return [[i for rows in groups[k:k + groups_per_pass] for i in rows] for k in range(0, len(groups), groups_per_pass)]


def batch_totals(episodes: Sequence[Episode], signal: Signal) -> dict[str, float]:
    """Whole-batch loss denominators: generated tokens, those of rows with a teacher context,
    and sequences (so micro-batch losses sum to the one-pass loss)."""
    tokens = [float(sum(ep.loss_mask[1:])) for ep in episodes]
    return {"batch_num_tokens": sum(tokens), "global_batch_size": float(len(episodes)),
            "teacher_tokens": sum(t for t, p in zip(tokens, signal.teacher_prefixes) if p is not None)}


def latest_checkpoint(path: Path) -> Path:
    """``path`` itself if it holds ``trainer.pt``, else its newest ``step_*`` child."""
    if (path / "trainer.pt").is_file():
        return path
    steps = sorted(p for p in path.glob("step_*") if (p / "trainer.pt").is_file())
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {path} (expected trainer.pt or step_*/trainer.pt)")
    return steps[-1]
