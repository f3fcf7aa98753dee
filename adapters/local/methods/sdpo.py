"""SDPO: self-distillation to an EMA teacher that sees a successful sibling (or feedback).

Before the loss (:meth:`SDPO.prepare`): per episode, a successful sibling's transcript as the
demonstration (``algorithms.sdpo.select_demonstrations``), else — failed episodes, with
``include_feedback`` — the env's feedback; the teacher context is the system prompt with that
reprompt section (``algorithms.sdpo.reprompt_messages``). An episode with neither is not distilled.
The loss replaces the policy gradient:

    D_t = GJSD_α(p_S(·|s_t) ‖ sg p_T(·|s_t, demo))   over the student's top-k + one tail bucket
    L = agg(min(ρ_t, is_clip)·D_t over distilled rows) + β_KL·k3(π_θ, π_ref)

(``algorithms.sdpo.generalized_jsd_topk`` and ``sdpo_loss_from_divergence``); the teacher
follows the student by EMA after each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from algorithms import grpo, sdpo
from algorithms.config import SDPOConfig

from ..forward import chunked_rows, generated_hidden, lm_head, pack
from ..rollout import Episode
from .base import EMATeacher, LocalMethod, MethodContext, Signal, UpdateInputs


class SDPO(LocalMethod):
    config: SDPOConfig

    def __init__(self, ctx: MethodContext, config: SDPOConfig) -> None:
        super().__init__(ctx, config)
        self.teacher = EMATeacher(ctx.model, config.ema_rate)

    def prepare(self, episodes: list[Episode], rewards: torch.Tensor, groups: torch.Tensor) -> Signal:
        """Each episode's reprompted teacher context; None where there is nothing to show."""
        cfg = self.config
        demos = sdpo.select_demonstrations(rewards, groups, success_threshold=cfg.success_threshold,
                                           dont_reprompt_on_self_success=cfg.dont_reprompt_on_self_success)
        system = self.ctx.renderer.system
        prefixes: list[list[int] | None] = []
        for i, ep in enumerate(episodes):
            d = int(demos[i])
            solution = transcript(episodes[d].messages) if d >= 0 else None
            failed = ep.reward < cfg.success_threshold
            feedback = episode_feedback(ep) if solution is None and failed and cfg.include_feedback else None
            # The reprompt section goes after the system prompt: in a multi-turn episode the
            # teacher must see the demonstration before the conversation it scores.
            ctx = sdpo.reprompt_messages([{"role": "user", "content": system}], solution=solution,
                                         feedback=feedback, max_chars=cfg.max_reprompt_chars)[-1]["content"]
            prefixes.append(self.ctx.renderer.prefix_ids_for(ctx) if ctx != system else None)
        return Signal(prefixes)

    def loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        batch, mask = x.batch, x.pmask.float()
        sample_mask = torch.tensor([p is not None for p in x.teacher_prefixes], device=mask.device)
        prefixes = [p if p is not None else self.ctx.renderer.prefix_ids for p in x.teacher_prefixes]
        with torch.no_grad():
            t_hidden = generated_hidden(self.teacher.model, prefixes, batch, grad=False)
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


def transcript(messages: Sequence[dict[str, Any]], max_chars: int = 4000) -> str:
    """A sibling's conversation as plain text (the "successful attempt" shown to the teacher)."""
    lines = [f"{m['role']}: {m.get('content') or ''}" for m in messages]
    return "\n".join(lines)[:max_chars]


def episode_feedback(ep: Episode) -> str | None:
    """Environment feedback for a failed episode: its error observations and how it ended."""
    errors = [m["content"] for m in ep.env_messages
              if m.get("role") == "tool" and str(m.get("content", "")).startswith("Error")]
    parts = [f"The episode ended with '{ep.termination}' and reward {ep.reward:g}."]
    if errors:
        parts.append("Tool errors: " + " | ".join(e[:200] for e in errors[:5]))
    return " ".join(parts)
