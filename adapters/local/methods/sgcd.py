"""SGCD: GRPO+KL whose token advantages are reshaped by bounded, detached credit weights.

Before the loss (:meth:`SGCD.prepare`), per kept group with a success and a failure: the
summarizer turns the sibling contrast into a credit reference, and the teacher prompt is the
student's with that reference in its system message (``algorithms.teacher_context.sgcd_prompts``,
the builder the verl plugin calls too).
In the loss, the teacher (the same policy, or its EMA with ``SGCDConfig.teacher="ema"``) is
teacher-forced on the student's own tokens without grad;

    D_t = KL(π_θ(·|s_t) ‖ π_T(·|s_t, ref)),  H_t = H(π_θ(·|s_t))   (full vocabulary, chunked,
                                                                 both at the rollout temperature)
    s_t = D_t + γ·H_t,  w_t = clip(1 + β(s_t / mean_traj(s) − 1), w_min, w_max)   (detached)
    L = GRPO+KL loss with A_{i,t} = w_t·A_i       (``algorithms.sgcd``; no distillation term)

A group whose reference is missing (no contrast, or the summarizer failed) keeps w = 1.
"""

from __future__ import annotations

import torch

from algorithms import sgcd
from algorithms.config import SGCDConfig
from algorithms.divergence import reverse_kl_and_entropy, reverse_kl_and_entropy_from_logits
from algorithms.teacher_context import sgcd_prompts

from ..forward import RolloutBatch, lm_head, pack
from ..rollout import Episode
from .base import EMATeacher, LocalMethod, MethodContext, Signal, UpdateInputs, attempt, teacher_hidden


class SGCD(LocalMethod):
    config: SGCDConfig

    def __init__(self, ctx: MethodContext, config: SGCDConfig) -> None:
        super().__init__(ctx, config)
        self.teacher = EMATeacher(ctx.model, config.ema_rate) if config.teacher == "ema" else None
        self.last_credit_weights: torch.Tensor | None = None
        """The weights of the last micro-batch (inspection and tests)."""

    def prepare(self, episodes: list[Episode], rewards: torch.Tensor, groups: torch.Tensor) -> Signal:
        """Each episode's teacher prompt: its group's credit reference in the system message
        (None where the group has no contrast or the summarizer failed: w = 1 there)."""
        renderer = self.ctx.renderer
        prompts, metrics = sgcd_prompts([attempt(ep, renderer.system) for ep in episodes], self.ctx.summarizer)
        return Signal([renderer.prompt_ids(p) if p is not None else None for p in prompts], metrics)

    def loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.ctx.grpo
        w, w_metrics = self.credit_weights(x.episodes, x.batch, x.hidden.detach(), x.pmask, x.teacher_prefixes)
        self.last_credit_weights = w
        loss, m = sgcd.sgcd_loss(x.logp, x.old_logp, x.ref_logp, x.adv, w, x.pmask.float(), eps_lo=cfg.eps_lo,
                                 eps_hi=cfg.eps_hi, beta_kl=cfg.beta_kl, clip_ratio_c=cfg.clip_ratio_c,
                                 loss_agg_mode=cfg.loss_agg_mode, **x.denominators())
        return loss, {**{f"loss/{k}": v for k, v in m.items()}, **{f"sgcd/{k}": v for k, v in w_metrics.items()}}

    def credit_weights(self, episodes: list[Episode], batch: RolloutBatch, student_hidden: torch.Tensor,
                       pmask: torch.Tensor, teacher_prompts: list[list[int] | None]) -> tuple[torch.Tensor, dict[str, float]]:
        """w per generated token (N, G): 1 in rows without a teacher prompt, else from the
        teacher/student divergence at each of the row's tokens."""
        cfg = self.config
        w = torch.ones(pmask.shape, device=pmask.device)
        teacher_rows = [i for i, p in enumerate(teacher_prompts) if p is not None]
        if not teacher_rows:
            return w, {}
        teacher = self.ctx.model if self.teacher is None else self.teacher.model
        with torch.no_grad():
            t_hidden = teacher_hidden(teacher, [episodes[i] for i in teacher_rows],
                                      [teacher_prompts[i] for i in teacher_rows], pad_id=self.ctx.pad_id,
                                      device=student_hidden.device)
        row_of_token = torch.nonzero(batch.mask)[:, 0]
        sel = torch.isin(row_of_token, torch.tensor(teacher_rows, device=row_of_token.device))
        kl, ent = self.divergence(student_hidden[sel], t_hidden, teacher)
        kl_tokens = torch.zeros(student_hidden.shape[0], device=student_hidden.device)
        ent_tokens = torch.zeros_like(kl_tokens)
        kl_tokens[sel] = kl.to(kl_tokens.dtype)
        ent_tokens[sel] = ent.to(ent_tokens.dtype)
        scores, _ = pack(sgcd.credit_scores(kl_tokens, ent_tokens, gamma=cfg.gamma), batch.mask)
        rows = torch.tensor(teacher_rows, device=pmask.device)
        w_rows, metrics = sgcd.credit_weights(scores[rows], pmask[rows].float(), beta=cfg.beta,
                                              w_min=cfg.w_min, w_max=cfg.w_max)
        w[rows] = w_rows.to(w.dtype)
        w = torch.where(pmask, w, torch.ones_like(w))
        return w, {**metrics, "kl_mean": float(kl.mean()), "entropy_mean": float(ent.mean())}

    def divergence(self, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                   teacher: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token D_t and H_t at temperature τ: softmax(z/τ) on both sides, each through its
        own LM head (z/τ = W(h/τ): the heads here have no bias). The policy as its own teacher
        shares one head, which the chunked / fused kernels use; an EMA teacher has its own head,
        so its logits are formed per chunk of rows."""
        cfg, tau = self.config, self.ctx.temperature
        s_head, t_head = lm_head(self.ctx.model), lm_head(teacher)
        if getattr(s_head, "bias", None) is not None or getattr(t_head, "bias", None) is not None:
            raise ValueError("SGCD's divergence assumes an LM head without bias")
        if tau != 1.0:
            student_hidden, teacher_hidden = student_hidden / tau, teacher_hidden / tau
        if s_head.weight is t_head.weight:
            return reverse_kl_and_entropy(student_hidden, teacher_hidden, s_head.weight.detach(),
                                          chunk_size=cfg.chunk_size, vocab_chunk_size=cfg.vocab_chunk_size,
                                          backend=cfg.divergence_backend)
        with torch.no_grad():
            parts = [reverse_kl_and_entropy_from_logits(s_head(student_hidden[r:r + cfg.chunk_size]),
                                                        t_head(teacher_hidden[r:r + cfg.chunk_size]))
                     for r in range(0, student_hidden.shape[0], cfg.chunk_size)]
        return torch.cat([kl for kl, _ in parts]), torch.cat([ent for _, ent in parts])

    def after_step(self) -> None:
        if self.teacher is not None:
            self.teacher.update()

    def state_dict(self) -> dict:
        return {} if self.teacher is None else self.teacher.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.teacher is not None:
            self.teacher.load_state_dict(state)
