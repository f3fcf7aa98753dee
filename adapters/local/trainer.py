"""The local single-process trainer: GRPO+KL, SGCD and SDPO on one CPU or one GPU.

One training step (SPEC §3), every formula taken from ``algorithms``:

1. rollout G siblings × B tasks (``RolloutEngine``; shared-prefix KV cache);
2. dynamic sampling: keep groups with mixed rewards, draw more tasks up to a round limit
   (``algorithms.sampling``), identical for every method so comparisons stay matched;
3. GRPO advantages (``algorithms.grpo.group_advantages``);
4. method-specific signal —
   *sgcd*: per kept group a credit reference (summarizer), the teacher (the same policy with
   the reference in its system prompt, no grad) teacher-forced on the student's own tokens,
   divergence features (``algorithms.divergence``) → bounded, detached credit weights
   (``algorithms.sgcd``) → token advantages w·A;
   *sdpo*: an EMA teacher with a successful sibling's transcript (or the episode's feedback)
   in its system prompt; the SDPO loss replaces the policy gradient (``algorithms.sdpo``);
5. loss (``grpo_kl_loss`` for grpo and sgcd; ``sdpo_loss`` + β_KL·k3 for sdpo) → AdamW step.

Single PPO epoch on fresh rollouts, so ``old_logp`` is the detached current log-prob (ρ = 1 at
the update, as in on-policy GRPO); the clip still bounds the gradient.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from algorithms import grpo, sampling, sdpo, sgcd
from algorithms.config import DynamicSamplingConfig, GRPOConfig, SDPOConfig, SGCDConfig
from algorithms.credit_reference import select_siblings, steps_from_messages, teacher_messages
from algorithms.divergence import reverse_kl_and_entropy

from .forward import (RolloutBatch, chunked_rows, collate, enable_activation_checkpointing, generated_hidden, lm_head,
                      pack, token_logp)
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


@dataclass(frozen=True)
class UpdateInputs:
    """What every method's loss sees: the kept episodes, their batch, the student's hidden rows
    (with grad), packed log-probs (N, G) with ``pmask``, rewards/groups (N,) and GRPO ``adv``."""

    episodes: list[Episode]
    batch: RolloutBatch
    hidden: torch.Tensor
    logp: torch.Tensor
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    pmask: torch.Tensor
    rewards: torch.Tensor
    groups: torch.Tensor
    adv: torch.Tensor
    totals: dict[str, float] | None = None
    """Whole-batch denominators when this is one micro-batch (None: the batch is one pass)."""
    teacher_prefixes: list[list[int]] | None = None
    """SDPO: each episode's teacher context (system prompt + demonstration or feedback)."""
    sample_mask: torch.Tensor | None = None
    """SDPO: which episodes are distilled (they have a demonstration or feedback)."""


def rollout_rewards(episodes: Sequence[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = torch.tensor([ep.reward for ep in episodes], dtype=torch.float32)
    groups = torch.tensor([ep.group for ep in episodes], dtype=torch.long)
    return rewards, groups


class LocalTrainer:
    """Owns the policy, the frozen reference, the optimizer and (SDPO) the EMA teacher."""

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
        sgcd_cfg: SGCDConfig | None = None,
        sdpo_cfg: SDPOConfig | None = None,
        summarizer: Any = None,
        task_pool: Sequence[str],
    ) -> None:
        if method not in ("grpo", "sgcd", "sdpo"):
            raise ValueError(f"unknown method {method!r}; choose grpo, sgcd or sdpo")
        if method == "sgcd" and (sgcd_cfg is None or summarizer is None):
            raise ValueError("method 'sgcd' needs an SGCDConfig and a summarizer")
        if method == "sdpo" and sdpo_cfg is None:
            raise ValueError("method 'sdpo' needs an SDPOConfig")
        if not task_pool:
            raise ValueError("task_pool is empty: no training tasks")
        self.model, self.tokenizer, self.engine = model, tokenizer, engine
        self.method, self.loop = method, loop
        self.grpo_cfg, self.sampling_cfg = grpo_cfg, sampling_cfg
        self.sgcd_cfg, self.sdpo_cfg, self.summarizer = sgcd_cfg, sdpo_cfg, summarizer
        self.task_pool = list(task_pool)
        self.ref_model = _frozen_copy(model)
        ema_teacher = method == "sdpo" or (method == "sgcd" and sgcd_cfg.teacher == "ema")
        self.teacher_model = _frozen_copy(model) if ema_teacher else None
        self.ema_rate = (sdpo_cfg.ema_rate if method == "sdpo" else sgcd_cfg.ema_rate) if ema_teacher else 0.0
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=grpo_cfg.lr, weight_decay=loop.weight_decay
        )
        self.step_idx = 0
        self._task_rng = torch.Generator().manual_seed(loop.seed)
        if loop.activation_checkpointing:  # after the frozen copies: they never run backward
            enable_activation_checkpointing(model)

    # ------------------------------------------------------------------ rollout + sampling
    def _draw_tasks(self, n: int) -> list[str]:
        order = torch.randperm(len(self.task_pool), generator=self._task_rng).tolist()
        picks = [self.task_pool[i] for i in order]
        while len(picks) < n:
            picks += picks
        return picks[:n]

    def collect(self) -> tuple[list[Episode], list[Episode], dict[str, float]]:
        """Rollouts with dynamic sampling: (kept episodes of up to B mixed groups, every
        episode rolled out, statistics)."""
        self.model.eval()
        kept: list[Episode] = []
        stats = {"groups_drawn": 0.0, "groups_kept": 0.0, "rollout_s": 0.0, "generated_tokens": 0.0,
                 "rollout_episodes": 0.0, "rollout_reward_mean": 0.0, "rollout_write_calls": 0.0,
                 "retokenization_mismatches": 0.0}
        all_eps: list[Episode] = []
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
        action = [ep for ep in all_eps if ep.category == "action"]
        if action:  # absent (not NaN) when no action task was drawn
            stats["rollout_action_success"] = sum(ep.reward for ep in action) / len(action)
        stats["retokenization_mismatches"] = float(sum(len(ep.retokenization_mismatches) for ep in all_eps))
        return kept, all_eps, stats

    # ------------------------------------------------------------------ one step
    def step(self) -> StepResult:
        """One training step; a step whose rollouts kept no mixed group makes no update."""
        started = time.perf_counter()
        episodes, rollouts, metrics = self.collect()
        self.step_idx += 1
        if episodes:
            metrics.update(self.update(episodes))
        else:
            metrics["updated"] = 0.0
        metrics["step_s"] = time.perf_counter() - started
        return StepResult(self.step_idx, metrics, episodes, rollouts)

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        """Advantages, the method's loss and one AdamW step on the kept episodes (accumulated
        over micro-batches of whole groups when ``loop.micro_batch_groups`` is set)."""
        started = time.perf_counter()
        self.model.train()
        device = next(self.model.parameters()).device
        rewards, groups = rollout_rewards(episodes)
        adv, adv_metrics = grpo.group_advantages(rewards.to(device), groups.to(device),
                                                 norm_by_std=self.grpo_cfg.norm_by_std)
        prefixes, sample_mask = self._sdpo_contexts(episodes, rewards, groups) if self.method == "sdpo" else (None, None)
        chunks = self._micro_batches(episodes)
        totals = self._totals(episodes, sample_mask) if len(chunks) > 1 else None
        loss_fn = {"grpo": self._grpo_loss, "sgcd": self._sgcd_loss, "sdpo": self._sdpo_loss}[self.method]
        self.optimizer.zero_grad(set_to_none=True)
        loss_total, train_tokens, metrics = 0.0, 0.0, {}
        for rows in chunks:
            index = torch.tensor(rows)
            sub = [episodes[i] for i in rows]
            inputs = self._inputs(sub, rewards[index], groups[index], adv[index.to(device)], device, totals,
                                  [prefixes[i] for i in rows] if prefixes else None,
                                  sample_mask[index] if sample_mask is not None else None)
            loss, chunk_metrics = loss_fn(inputs)
            loss.backward()
            loss_total += float(loss.detach())
            train_tokens += float(inputs.pmask.sum())
            share = len(rows) / len(episodes)  # metrics: episode-weighted mean over micro-batches
            for k, v in chunk_metrics.items():
                metrics[k] = metrics.get(k, 0.0) + share * v
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grpo_cfg.max_grad_norm)
        self.optimizer.step()
        if self.teacher_model is not None:
            sdpo.ema_update_(self.teacher_model, self.model, rate=self.ema_rate)
        return {**{f"adv/{k}": v for k, v in adv_metrics.items()}, **metrics, "loss": loss_total,
                "grad_norm": float(grad_norm), "updated": 1.0, "train_tokens": train_tokens,
                "micro_batches": float(len(chunks)), "update_s": time.perf_counter() - started}

    def _micro_batches(self, episodes: list[Episode]) -> list[list[int]]:
        """Episode indices per micro-batch, whole groups only (SGCD and SDPO look at siblings)."""
        size = self.loop.micro_batch_groups
        if size is None:
            return [list(range(len(episodes)))]
        by_group: dict[int, list[int]] = {}  # groups in order of first appearance
        for i, ep in enumerate(episodes):
            by_group.setdefault(ep.group, []).append(i)
        groups = list(by_group.values())
        return [[i for rows in groups[k:k + size] for i in rows] for k in range(0, len(groups), size)]

    @staticmethod
    def _totals(episodes: list[Episode], sample_mask: torch.Tensor | None) -> dict[str, float]:
        """Whole-batch denominators: generated tokens and sequences (SDPO: distilled tokens)."""
        tokens = [float(sum(ep.loss_mask[1:])) for ep in episodes]
        totals = {"batch_num_tokens": sum(tokens), "global_batch_size": float(len(episodes))}
        if sample_mask is not None:
            totals["distilled_tokens"] = sum(t for t, d in zip(tokens, sample_mask.tolist()) if d)
        return totals

    def _inputs(self, episodes, rewards, groups, adv, device, totals, teacher_prefixes, sample_mask) -> UpdateInputs:
        """Student and reference log-probs of one micro-batch (the student's with grad)."""
        batch = collate(episodes, pad_id=self.engine.pad_id, device=device)
        prefix = [self.engine.renderer.prefix_ids] * len(episodes)
        targets = batch.targets[batch.mask]
        hidden = generated_hidden(self.model, prefix, batch, grad=True)
        logp, pmask = pack(token_logp(self.model, hidden, targets), batch.mask)
        with torch.no_grad():
            ref_hidden = generated_hidden(self.ref_model, prefix, batch, grad=False)
            ref_logp, _ = pack(token_logp(self.ref_model, ref_hidden, targets), batch.mask)
        return UpdateInputs(episodes, batch, hidden, logp, logp.detach(), ref_logp, pmask, rewards, groups, adv,
                            totals, teacher_prefixes, sample_mask)

    # ------------------------------------------------------------------ losses
    def _grpo_loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.grpo_cfg
        loss, m = grpo.grpo_kl_loss(x.logp, x.old_logp, x.ref_logp, x.adv, x.pmask.float(), eps_lo=cfg.eps_lo,
                                    eps_hi=cfg.eps_hi, beta_kl=cfg.beta_kl, loss_agg_mode=cfg.loss_agg_mode,
                                    **_denominators(x.totals))
        return loss, {f"loss/{k}": v for k, v in m.items()}

    def _sgcd_loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.grpo_cfg
        w, w_metrics = self.credit_weights(x.episodes, x.batch, x.hidden.detach(), x.pmask)
        self.last_credit_weights = w
        loss, m = sgcd.sgcd_loss(x.logp, x.old_logp, x.ref_logp, x.adv, w, x.pmask.float(), eps_lo=cfg.eps_lo,
                                 eps_hi=cfg.eps_hi, beta_kl=cfg.beta_kl, loss_agg_mode=cfg.loss_agg_mode,
                                 **_denominators(x.totals))
        return loss, {**{f"loss/{k}": v for k, v in m.items()}, **{f"sgcd/{k}": v for k, v in w_metrics.items()}}

    def credit_weights(self, episodes: list[Episode], batch: RolloutBatch, student_hidden: torch.Tensor,
                        pmask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """w per generated token: 1 for a group whose reference failed, else from divergence."""
        cfg = self.sgcd_cfg
        system = self.engine.renderer.system
        teacher_prefix: list[list[int] | None] = [None] * len(episodes)
        by_group: dict[int, list[int]] = {}
        for i, ep in enumerate(episodes):
            by_group.setdefault(ep.group, []).append(i)
        references = 0
        for rows in by_group.values():
            best, failed = select_siblings([episodes[i].reward for i in rows])
            if best is None or not failed:
                continue
            steps = [steps_from_messages(episodes[i].env_messages) for i in rows]
            task_prompt = episodes[rows[0]].messages[0]["content"]
            ref = self.summarizer.reference(task_prompt, steps[best], [steps[j] for j in failed])
            if ref is None:
                continue  # fallback w = 1 for this group (counted by the summarizer)
            references += 1
            ctx = teacher_messages([{"role": "system", "content": system}], ref)[0]["content"]
            ids = self.engine.renderer.prefix_ids_for(ctx)
            for i in rows:
                teacher_prefix[i] = ids
        w_rows = torch.ones(student_hidden.shape[0], device=student_hidden.device)  # one per generated token
        scores_packed = None
        teacher_rows = [i for i, p in enumerate(teacher_prefix) if p is not None]
        metrics = {"groups_with_reference": float(references), "groups": float(len(by_group))}
        if teacher_rows:
            teacher = self.model if self.teacher_model is None else self.teacher_model
            sub = RolloutBatch(batch.ids[teacher_rows], batch.attn[teacher_rows], batch.mask[teacher_rows])
            with torch.no_grad():
                t_hidden = generated_hidden(teacher, [teacher_prefix[i] for i in teacher_rows], sub, grad=False)
            row_of_token = torch.nonzero(batch.mask)[:, 0]
            sel = torch.isin(row_of_token, torch.tensor(teacher_rows, device=row_of_token.device))
            kl, ent = reverse_kl_and_entropy(student_hidden[sel], t_hidden, lm_head(self.model).weight.detach(),
                                             chunk_size=cfg.chunk_size, vocab_chunk_size=cfg.vocab_chunk_size,
                                             backend=cfg.divergence_backend)
            kl_rows = torch.zeros_like(w_rows)
            ent_rows = torch.zeros_like(w_rows)
            kl_rows[sel] = kl.to(w_rows.dtype)
            ent_rows[sel] = ent.to(w_rows.dtype)
            scores_packed, _ = pack(sgcd.credit_scores(kl_rows, ent_rows, gamma=cfg.gamma), batch.mask)
            metrics["kl_mean"] = float(kl.mean())
            metrics["entropy_mean"] = float(ent.mean())
        w = torch.ones(pmask.shape, device=pmask.device)
        if scores_packed is not None:
            rows = torch.tensor(teacher_rows, device=pmask.device)
            w_t, w_metrics = sgcd.credit_weights(scores_packed[rows], pmask[rows].float(), beta=cfg.beta,
                                                 w_min=cfg.w_min, w_max=cfg.w_max)
            w[rows] = w_t.to(w.dtype)
            metrics.update(w_metrics)
        w = torch.where(pmask, w, torch.ones_like(w))
        return w, metrics

    # ------------------------------------------------------------------ SDPO
    def _sdpo_contexts(self, episodes: list[Episode], rewards: torch.Tensor,
                       groups: torch.Tensor) -> tuple[list[list[int]], torch.Tensor]:
        """Each episode's teacher context (token ids) and whether it is distilled: a successful
        sibling's transcript as the demonstration, else (failed episodes) the env's feedback."""
        cfg = self.sdpo_cfg
        demos = sdpo.select_demonstrations(rewards, groups, success_threshold=cfg.success_threshold,
                                           dont_reprompt_on_self_success=cfg.dont_reprompt_on_self_success)
        system = self.engine.renderer.system
        prefixes: list[list[int]] = []
        sample_mask = torch.zeros(len(episodes), dtype=torch.bool)
        for i, ep in enumerate(episodes):
            d = int(demos[i])
            solution = transcript(episodes[d].messages) if d >= 0 else None
            failed = ep.reward < cfg.success_threshold
            feedback = episode_feedback(ep) if solution is None and failed and cfg.include_feedback else None
            # The reprompt section goes after the system prompt: in a multi-turn episode the
            # teacher must see the demonstration before the conversation it scores.
            ctx = sdpo.reprompt_messages([{"role": "user", "content": system}], solution=solution,
                                         feedback=feedback, max_chars=cfg.max_reprompt_chars)[-1]["content"]
            sample_mask[i] = ctx != system
            prefixes.append(self.engine.renderer.prefix_ids_for(ctx))
        return prefixes, sample_mask

    def _sdpo_loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.sdpo_cfg
        batch, pmask = x.batch, x.pmask
        with torch.no_grad():
            t_hidden = generated_hidden(self.teacher_model, x.teacher_prefixes, batch, grad=False)
        student_head, teacher_head = lm_head(self.model), lm_head(self.teacher_model)

        def divergence(s_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
            return sdpo.generalized_jsd_topk(student_head(s_hidden).float(), teacher_head(teacher_hidden).float(),
                                             alpha=cfg.alpha, topk=cfg.topk, add_tail=cfg.add_tail)

        # per-token GJSD in checkpointed chunks: no [tokens × V] student or teacher logits at once
        per_token, _ = pack(chunked_rows(divergence, x.hidden, t_hidden), batch.mask)
        mask = pmask.float()
        distilled = None if x.totals is None else {**x.totals, "batch_num_tokens": x.totals["distilled_tokens"]}
        loss, metrics = sdpo.sdpo_loss_from_divergence(per_token, x.logp, x.old_logp, mask,
                                                       x.sample_mask.to(mask.device), is_clip=cfg.is_clip,
                                                       loss_agg_mode=cfg.loss_agg_mode, **_denominators(distilled))
        if cfg.beta_kl > 0:
            kl = grpo.aggregate_loss(grpo.kl_k3(x.logp, x.ref_logp), mask, cfg.loss_agg_mode,
                                     **_denominators(x.totals))
            loss = loss + cfg.beta_kl * kl
            metrics = {**metrics, "kl_k3": float(kl.detach())}
        return loss, {f"loss/{k}": v for k, v in metrics.items()}

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: Path) -> Path:
        """Write model, optimizer, teacher and loop position; atomic (temp dir + rename)."""
        directory = Path(directory)
        target = directory / f"step_{self.step_idx:06d}"
        staging = directory / f".tmp_step_{self.step_idx:06d}"
        staging.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step_idx, "method": self.method, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "task_rng": self._task_rng.get_state()}
        if self.teacher_model is not None:
            state["teacher"] = self.teacher_model.state_dict()
        torch.save(state, staging / "trainer.pt")
        if target.exists():
            import shutil

            shutil.rmtree(target)
        staging.rename(target)
        return target

    def load(self, checkpoint: Path) -> None:
        """Resume from a directory written by :meth:`save` (or the newest one inside it)."""
        checkpoint = latest_checkpoint(Path(checkpoint))
        state = torch.load(checkpoint / "trainer.pt", map_location=next(self.model.parameters()).device,
                           weights_only=False)
        if state["method"] != self.method:
            raise ValueError(f"checkpoint {checkpoint} was written by method {state['method']!r}, not {self.method!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._task_rng.set_state(state["task_rng"])
        if self.teacher_model is not None and "teacher" in state:
            self.teacher_model.load_state_dict(state["teacher"])
        self.step_idx = int(state["step"])


def _denominators(totals: dict[str, float] | None) -> dict[str, float]:
    """``aggregate_loss``'s whole-batch denominators for one micro-batch ({} for a single pass)."""
    if totals is None:
        return {}
    return {"batch_num_tokens": totals["batch_num_tokens"], "global_batch_size": totals["global_batch_size"]}


def latest_checkpoint(path: Path) -> Path:
    """``path`` itself if it holds ``trainer.pt``, else its newest ``step_*`` child."""
    if (path / "trainer.pt").is_file():
        return path
    steps = sorted(p for p in path.glob("step_*") if (p / "trainer.pt").is_file())
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {path} (expected trainer.pt or step_*/trainer.pt)")
    return steps[-1]


def transcript(messages: Sequence[dict[str, Any]], max_chars: int = 4000) -> str:
    """A sibling's conversation as plain text (the SDPO "successful attempt" shown to the teacher)."""
    lines = [f"{m['role']}: {m.get('content') or ''}" for m in messages]
    return "\n".join(lines)[:max_chars]


def episode_feedback(ep: Episode) -> str | None:
    """Environment feedback for a failed episode: its error observations and how it ended."""
    errors = [m["content"] for m in ep.env_messages if m.get("role") == "tool" and str(m.get("content", "")).startswith("Error")]
    parts = [f"The episode ended with '{ep.termination}' and reward {ep.reward:g}."]
    if errors:
        parts.append("Tool errors: " + " | ".join(e[:200] for e in errors[:5]))
    return " ".join(parts)


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    clone = copy.deepcopy(model)
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone

