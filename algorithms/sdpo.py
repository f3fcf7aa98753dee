"""SDPO baseline (Hübotter et al. 2026, arXiv 2601.20802), as in its reference code.

SPEC §3.6. The teacher is the EMA of the policy conditioned on the prompt plus a successful
sibling ("correct solution") or, when none succeeded, environment feedback; the per-token loss
is a generalised Jensen–Shannon divergence over the student's top-k tokens plus a tail bucket,
multiplied by a capped importance ratio, applied only to samples that have a demonstration or
feedback, and it REPLACES the policy-gradient loss (λ = 0). Details verified against
github.com/lasgroup/SDPO (``core_algos.compute_self_distillation_loss``, the reprompt builder,
``teacher_update_rate``), summarised in research/papers.md §2.1; the code here is our own.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from algorithms import _checks
from algorithms.errors import ShapeError
from algorithms.grpo import LOG_RATIO_CLAMP, aggregate_loss, group_index, masked_mean
from algorithms.topk import generalized_jsd_bins, tail_bin

__all__ = [
    "DISTILLED_TOKEN_MEANS",
    "generalized_jsd_topk",
    "sdpo_loss",
    "sdpo_loss_sampled_token",
    "ema_update_",
]


def _topk_support(logp_s: torch.Tensor, logp_t: torch.Tensor, topk: int | None, add_tail: bool):
    """Restrict both log-distributions to the student's top-k ids (+ tail bucket or renormalise)."""
    v = logp_s.shape[-1]
    if topk is None or topk >= v:
        return logp_s, logp_t  # full vocabulary: exact, no tail needed
    idx = logp_s.detach().topk(topk, dim=-1).indices
    ks, kt = logp_s.gather(-1, idx), logp_t.gather(-1, idx)
    if add_tail:
        return tail_bin(ks), tail_bin(kt)
    return ks - torch.logsumexp(ks, -1, keepdim=True), kt - torch.logsumexp(kt, -1, keepdim=True)


def generalized_jsd_topk(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    alpha: float = 0.5,
    topk: int | None = 100,
    add_tail: bool = True,
) -> torch.Tensor:
    """Per-token generalised JSD between student p_S and (detached) teacher p_T.

    With M = (1 − α) p_S + α p_T:
    ``ℓ = (1 − α)·KL(p_S‖M) + α·KL(p_T‖M)`` for 0 < α < 1 (α = 0.5: Jensen–Shannon);
    ``ℓ = KL(p_T‖p_S)`` (forward KL) for α = 0 and ``ℓ = KL(p_S‖p_T)`` (reverse KL) for α = 1.
    The endpoints are special cases, as in the reference code (the mixture form tends to 0 there).

    Support: the student's top-``topk`` token ids; both distributions are restricted to them and
    either get a tail bucket log(1 − Σ_k p_k) (``add_tail``) or are renormalised over the k ids.
    ``topk=None`` or ``topk ≥ V`` uses the full vocabulary exactly.
    Shapes: logits (..., V) → (...) float32. Gradient flows through the student only (the teacher
    is detached; top-k ids are chosen without gradient). Source: SDPO reference code
    (``compute_self_distillation_loss``, full_logit_distillation with ``distillation_topk``).
    """
    _checks.paired_logits(student_logits, teacher_logits)
    if not (0.0 <= alpha <= 1.0):
        raise ShapeError(f"alpha must be in [0, 1], got {alpha!r}")
    if topk is not None and (int(topk) != topk or topk < 1):
        raise ShapeError(f"topk must be a positive integer or None, got {topk!r}")
    logp_s = torch.log_softmax(student_logits.float(), dim=-1)
    logp_t = torch.log_softmax(teacher_logits.detach().float(), dim=-1)
    ls, lt = _topk_support(logp_s, logp_t, topk, add_tail)
    return generalized_jsd_bins(ls, lt, alpha=alpha)


def _is_ratio(logp: torch.Tensor, old_logp: torch.Tensor, is_clip: float | None) -> torch.Tensor:
    """Detached ``min(exp(clamp(logp − old_logp, ±20)), is_clip)``; ones when is_clip is None."""
    if is_clip is None:
        return torch.ones_like(logp)
    if not (is_clip > 0):
        raise ShapeError(f"is_clip must be > 0 or None, got {is_clip!r}")
    lr = (logp - old_logp).detach().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(lr).clamp(max=is_clip)


def _distill_mask(mask: torch.Tensor, sample_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    m = _checks.positive_mask("mask", mask, like)
    if sample_mask.shape != (like.shape[0],):
        raise ShapeError(f"sample_mask must have shape ({like.shape[0]},), got {tuple(sample_mask.shape)}")
    return m * sample_mask.to(m.dtype).unsqueeze(-1)


DISTILLED_TOKEN_MEANS = ("sdpo/distill_per_token", "sdpo/is_ratio_mean", "sdpo/is_clip_frac")
"""Metrics that are means over the distilled tokens (``sdpo/num_tokens`` of them). They are left
out when there are none: a mean over no tokens is undefined, and a 0 in its place would pull
any later mean over micro-batches towards 0."""


def _sdpo_metrics(loss, per_tok, ratio, lm, sample_mask, is_clip) -> dict[str, float]:
    with torch.no_grad():
        metrics = {
            "sdpo/loss": float(loss.detach()),
            "sdpo/frac_samples_distilled": float(sample_mask.float().mean()) if sample_mask.numel() else 0.0,
            "sdpo/num_tokens": float(lm.sum()),
        }
        if metrics["sdpo/num_tokens"] > 0:
            metrics |= {
                "sdpo/distill_per_token": float(masked_mean(per_tok.detach(), lm)),
                "sdpo/is_ratio_mean": float(masked_mean(ratio, lm)),
                "sdpo/is_clip_frac": float(masked_mean((ratio >= is_clip).to(lm.dtype), lm)) if is_clip else 0.0,
            }
        return metrics


def sdpo_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    sample_mask: torch.Tensor,
    *,
    alpha: float = 0.5,
    topk: int | None = 100,
    add_tail: bool = True,
    is_clip: float | None = 2.0,
    loss_agg_mode: str = "token-mean",
    batch_num_tokens: float | None = None,
    global_batch_size: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SDPO actor loss (replaces the PG loss; an optional KL-to-ref term is added by the caller).

    ``ℓ_t = GJSD_α(p_S(·|x, y<t) ‖ sg p_T(·|x, f, y<t)) · min(ρ_t, is_clip)``,
    ``ρ_t = sg exp(clamp(logp_t − old_logp_t, ±20))``, aggregated with ``loss_agg_mode`` over
    ``mask · sample_mask`` (only samples with a demonstration or feedback are distilled).
    Shapes: student_logits, teacher_logits (B, T, V); logp, old_logp, mask (B, T) (logp = log
    p_S of the sampled token, used only for the IS ratio); sample_mask (B,) → scalar loss.
    Gradient flows only through ``student_logits``. Defaults α = 0.5, top-100 + tail, cap 2,
    token-mean: SDPO reference code (generalisation/tool-use runs). ``batch_num_tokens`` /
    ``global_batch_size``: whole-batch distilled token / sequence counts for micro-batching.
    """
    if student_logits.ndim != 3 or student_logits.shape[:2] != logp.shape:
        raise ShapeError(
            f"student_logits must be (B, T, V) matching logp (B, T) = {tuple(logp.shape)}, "
            f"got {tuple(student_logits.shape)}"
        )
    per_tok = generalized_jsd_topk(student_logits, teacher_logits, alpha=alpha, topk=topk, add_tail=add_tail)
    return sdpo_loss_from_divergence(per_tok, logp, old_logp, mask, sample_mask, is_clip=is_clip,
                                     loss_agg_mode=loss_agg_mode, batch_num_tokens=batch_num_tokens,
                                     global_batch_size=global_batch_size)


def sdpo_loss_from_divergence(
    per_token: torch.Tensor,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    sample_mask: torch.Tensor,
    *,
    is_clip: float | None = 2.0,
    loss_agg_mode: str = "token-mean",
    batch_num_tokens: float | None = None,
    global_batch_size: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`sdpo_loss` from per-token divergences ``D_t = GJSD_α(p_S ‖ sg p_T)`` computed
    beforehand (e.g. chunk by chunk, so no (B, T, V) tensor exists at once):
    ``ℓ_t = D_t · min(ρ_t, is_clip)`` aggregated over ``mask · sample_mask``.
    Shapes: per_token, logp, old_logp, mask (B, T); sample_mask (B,). Gradient through
    ``per_token`` only."""
    _checks.same_shape(per_token=per_token, logp=logp, old_logp=old_logp, mask=mask)
    _checks.finite("logp", logp)
    _checks.finite("old_logp", old_logp)
    ratio = _is_ratio(logp, old_logp, is_clip)
    lm = _distill_mask(mask, sample_mask, per_token)
    loss = aggregate_loss(per_token * ratio, lm, loss_agg_mode, batch_num_tokens=batch_num_tokens,
                          global_batch_size=global_batch_size)
    return loss, _sdpo_metrics(loss, per_token, ratio, lm, sample_mask, is_clip)


def sdpo_loss_sampled_token(
    logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    sample_mask: torch.Tensor,
    *,
    is_clip: float | None = 2.0,
    loss_agg_mode: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sampled-token reverse-KL form of SDPO (no full logits needed).

    ``ℓ_t = sg(logp_t − logp^T_t) · logp_t · min(ρ_t, is_clip)``: its gradient
    ``sg(log p_S − log p_T) ∇log p_S`` is the score-function estimate of ∇KL(p_S‖p_T) at
    y_t ~ p_S. Shapes (B, T); sample_mask (B,). Gradient through ``logp`` only.
    Source: SDPO reference code (``full_logit_distillation=False``, reverse KL only).
    """
    _checks.same_shape(logp=logp, teacher_logp=teacher_logp, old_logp=old_logp, mask=mask)
    _checks.ndim("logp", logp, 2)
    for name, t in (("logp", logp), ("teacher_logp", teacher_logp), ("old_logp", old_logp)):
        _checks.finite(name, t)
    per_tok = (logp - teacher_logp).detach() * logp
    ratio = _is_ratio(logp, old_logp, is_clip)
    lm = _distill_mask(mask, sample_mask, logp)
    loss = aggregate_loss(per_tok * ratio, lm, loss_agg_mode)
    return loss, _sdpo_metrics(loss, (logp - teacher_logp).detach(), ratio, lm, sample_mask, is_clip)


@torch.no_grad()
def ema_update_(
    teacher_params: Iterable[torch.Tensor] | torch.nn.Module,
    student_params: Iterable[torch.Tensor] | torch.nn.Module,
    *,
    rate: float = 0.05,
) -> None:
    """In-place EMA teacher update ``θ_T ← (1 − r)·θ_T + r·θ_S`` (no gradient).

    Accepts modules or parameter iterables of equal length and shapes. r = 0 freezes the
    teacher, r = 1 copies the student. Source: SDPO reference code (``teacher_update_rate`` 0.05).
    """
    if not (0.0 <= rate <= 1.0):
        raise ShapeError(f"rate must be in [0, 1], got {rate!r}")
    tp = list(teacher_params.parameters() if isinstance(teacher_params, torch.nn.Module) else teacher_params)
    sp = list(student_params.parameters() if isinstance(student_params, torch.nn.Module) else student_params)
    if len(tp) != len(sp):
        raise ShapeError(f"teacher has {len(tp)} tensors but student has {len(sp)}")
    for i, (t, s) in enumerate(zip(tp, sp)):
        if t.shape != s.shape:
            raise ShapeError(f"parameter {i}: teacher shape {tuple(t.shape)} != student {tuple(s.shape)}")
        _checks.finite(f"student parameter {i}", s)
        t.lerp_(s.to(t.dtype), rate)
