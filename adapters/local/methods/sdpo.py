"""SDPO: self-distillation to an EMA teacher that sees a successful sibling (or feedback).

Before the loss (:meth:`SDPO.prepare`): per episode, a successful sibling's conversation as the
demonstration, else — a failed episode whose env reported feedback, with ``include_feedback`` —
that feedback; the teacher prompt is the student's with its user turn rewritten as the task, that
section and the instruction to solve it (``algorithms.teacher_context.sdpo_prompts``, the builder
the verl plugin calls too; lasgroup/SDPO's reprompt). An episode with neither is not distilled.
The loss replaces the policy gradient:

    D_t = GJSD_α(p_S(·|s_t) ‖ sg p_T(·|s_t, demo))   over the student's top-k + one tail bucket
    L = agg(min(ρ_t, is_clip)·D_t over distilled rows) + β_KL·k3(π_θ, π_ref)

(``algorithms.sdpo.generalized_jsd_topk`` and ``sdpo_loss_from_divergence``); the teacher
follows the student by EMA after each step.
"""

from __future__ import annotations

from typing import Any

import torch

from algorithms import grpo, sdpo
from algorithms.config import SDPOConfig
from algorithms.teacher_context import sdpo_prompts

from ..forward import chunked_rows, lm_head, pack
from ..rollout import Episode
from .base import EMATeacher, LocalMethod, MethodContext, Signal, UpdateInputs, attempt, student_prompt_ids, teacher_hidden


class SDPO(LocalMethod):
    config: SDPOConfig

    def __init__(self, ctx: MethodContext, config: SDPOConfig) -> None:
        super().__init__(ctx, config)
        self.teacher = EMATeacher(ctx.model, config.ema_rate)

    def prepare(self, episodes: list[Episode], rewards: torch.Tensor, groups: torch.Tensor) -> Signal:
        """Each episode's reprompted teacher prompt; None where there is nothing to show."""
        cfg, renderer = self.config, self.ctx.renderer
        prompts = sdpo_prompts([attempt(ep, renderer.system) for ep in episodes],
                               success_threshold=cfg.success_threshold,
                               dont_reprompt_on_self_success=cfg.dont_reprompt_on_self_success,
                               include_feedback=cfg.include_feedback, max_chars=cfg.max_reprompt_chars)
        return Signal([renderer.prompt_ids(p) if p is not None else None for p in prompts])

    def loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        batch, mask = x.batch, x.pmask.float()
        sample_mask = torch.tensor([p is not None for p in x.teacher_prefixes], device=mask.device)
        prompts = [p if p is not None else student_prompt_ids(ep, self.ctx.renderer.prefix_ids)
                   for p, ep in zip(x.teacher_prefixes, x.episodes)]
        with torch.no_grad():
            t_hidden = teacher_hidden(self.teacher.model, x.episodes, prompts, pad_id=self.ctx.pad_id,
                                      device=mask.device)
        student_head, teacher_head = lm_head(self.ctx.model), lm_head(self.teacher.model)

        tau = self.ctx.temperature

        def divergence(s_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
            return sdpo.generalized_jsd_topk(student_head(s_hidden).float() / tau,
                                             teacher_head(teacher_hidden).float() / tau,
                                             alpha=cfg.alpha, topk=cfg.topk, add_tail=cfg.add_tail)

        # per-token GJSD in checkpointed chunks: no [tokens × V] student or teacher logits at once
        per_token, _ = pack(chunked_rows(divergence, x.hidden, t_hidden), batch.mask)
        loss, metrics = sdpo.sdpo_loss_from_divergence(per_token, x.logp, x.old_logp, mask, sample_mask,
                                                       is_clip=cfg.is_clip, loss_agg_mode=cfg.loss_agg_mode,
                                                       **x.denominators("teacher_tokens"))
        if cfg.beta_kl > 0:
            kl = grpo.aggregate_loss(grpo.kl_k3(x.logp, x.ref_logp), mask, cfg.loss_agg_mode, **x.denominators())
            loss = loss + cfg.beta_kl * kl
            metrics = {**metrics, "kl_k3": float(kl.detach())}
        return loss, {f"loss/{k}": v for k, v in metrics.items()}

    def after_step(self) -> None:
        self.teacher.update()

    def state_dict(self) -> dict[str, Any]:
        return self.teacher.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state)
