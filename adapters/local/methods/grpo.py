"""GRPO+KL: the matched comparator. No signal of its own; the loss is the clipped policy
gradient on group advantages plus β_KL·k3 to the reference (``algorithms.grpo.grpo_kl_loss``)."""

from __future__ import annotations

import torch

from algorithms import grpo

from .base import LocalMethod, UpdateInputs


class GRPO(LocalMethod):
    def loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.ctx.grpo
        loss, m = grpo.grpo_kl_loss(x.logp, x.old_logp, x.ref_logp, x.adv, x.pmask.float(), eps_lo=cfg.eps_lo,
                                    eps_hi=cfg.eps_hi, beta_kl=cfg.beta_kl, clip_ratio_c=cfg.clip_ratio_c,
                                    loss_agg_mode=cfg.loss_agg_mode, **x.denominators())
        return loss, {f"loss/{k}": v for k, v in m.items()}
