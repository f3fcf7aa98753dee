"""Divergences over a coarse partition of the vocabulary: top-k bins plus one tail bin.

A distribution p over V tokens, seen through a partition {B_1, …, B_K, rest} of the vocabulary,
becomes K + 1 probabilities: p(B_j) and p(rest) = 1 − Σ_j p(B_j). Both SDPO's top-k + tail loss
(lasgroup/SDPO ``distillation_topk`` with ``distillation_add_tail``) and the verl path's dense
SGCD divergence compute their divergence over such a partition, so the formulas live here once:

* :func:`tail_bin` — append ``log p(rest) = log(1 − Σ_j p_j)`` to K log-probabilities;
* :func:`kl_bins` — ``KL(p‖q) = Σ_b p_b (log p_b − log q_b)`` over the bins (0·log 0 = 0);
* :func:`generalized_jsd_bins` — SDPO's generalised Jensen–Shannon divergence over the bins;
* :func:`shared_topk_bins` — the partition a pair of top-k lists allows: every token that is in
  *both* the student's and the teacher's top-k list is its own bin, all others form the tail.
  This is what two ``prompt_logprobs`` answers of an inference server (vLLM, SGLang, the CPU
  backend) make computable: each side's top-k ids with log-probs normalised over the full
  vocabulary, and nothing about the other side's ids.

Coarsening never increases a divergence (data-processing inequality: an f-divergence over a
partition is ≤ the one over the full vocabulary), so ``reverse_kl_shared_topk`` ≤ the exact
``KL(p_S‖p_T)`` and reaches it when the top-k lists hold all of both distributions' mass.
"""

from __future__ import annotations

import torch

from algorithms.errors import ShapeError

__all__ = ["generalized_jsd_bins", "kl_bins", "reverse_kl_shared_topk", "shared_topk_bins", "tail_bin"]

TAIL_LSE_MAX = -1e-7
"""``log Σ_j p_j`` is clamped to at most this before ``log(1 − Σ_j p_j)`` (as lasgroup/SDPO does), so
a top-k list holding (numerically) all the mass gives a tiny, finite tail instead of −∞."""


def tail_bin(logp: torch.Tensor) -> torch.Tensor:
    """K log-probabilities → K + 1: ``[log p_1, …, log p_K, log(1 − Σ_j p_j)]``.

    The tail is ``log(−expm1(lse))`` with ``lse = min(log Σ_j p_j, TAIL_LSE_MAX)``; bins at −∞ (no
    mass) are allowed. Shapes: (..., K) → (..., K + 1); gradient flows through ``logp``.
    """
    lse = torch.logsumexp(logp, dim=-1, keepdim=True).clamp(max=TAIL_LSE_MAX)
    return torch.cat([logp, torch.log(-torch.expm1(lse))], dim=-1)


def kl_bins(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``KL(p‖q) = Σ_b p_b (log p_b − log q_b)`` over the last axis; bins with p_b = 0 add 0.

    Shapes: (..., K) each → (...). Used on full distributions (K = V) and on binned ones.
    """
    if logp.shape != logq.shape:
        raise ShapeError(f"logp {tuple(logp.shape)} and logq {tuple(logq.shape)} must have the same shape")
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)


def generalized_jsd_bins(student: torch.Tensor, teacher: torch.Tensor, *, alpha: float = 0.5) -> torch.Tensor:
    """SDPO's generalised JSD between binned log-distributions (student p_S, teacher p_T).

    With M = (1 − α) p_S + α p_T: ``ℓ = (1 − α)·KL(p_S‖M) + α·KL(p_T‖M)`` for 0 < α < 1;
    ``ℓ = KL(p_T‖p_S)`` (forward) at α = 0 and ``ℓ = KL(p_S‖p_T)`` (reverse) at α = 1, the
    endpoints taken as in the SDPO reference code. Shapes (..., K) each → (...). The caller
    decides what is detached.
    """
    if not (0.0 <= alpha <= 1.0):
        raise ShapeError(f"alpha must be in [0, 1], got {alpha!r}")
    if alpha == 0.0:
        return kl_bins(teacher, student)
    if alpha == 1.0:
        return kl_bins(student, teacher)
    a = torch.tensor(alpha, dtype=student.dtype, device=student.device)
    log_m = torch.logsumexp(torch.stack([student + torch.log1p(-a), teacher + torch.log(a)]), dim=0)
    return (1.0 - alpha) * kl_bins(student, log_m) + alpha * kl_bins(teacher, log_m)


def shared_topk_bins(
    student_ids: torch.Tensor,
    student_logp: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logp: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both distributions over the partition {v ∈ S ∩ T as its own bin} ∪ {the rest}.

    ``student_ids``/``student_logp`` (..., K_s): the student's top-k token ids and their
    log-probabilities (normalised over the full vocabulary); ``teacher_ids``/``teacher_logp``
    (..., K_t) the teacher's. Slot j of the student's list is a bin when its id is also in the
    teacher's list, else it is dropped (−∞ in both: its mass goes to the tail). Returns
    ``(shared, student_bins, teacher_bins)``: the (..., K_s) bool mask of shared slots and the
    two (..., K_s + 1) binned log-distributions (:func:`tail_bin` last). Gradient flows through
    ``student_logp`` and ``teacher_logp``.
    """
    if student_ids.shape != student_logp.shape or teacher_ids.shape != teacher_logp.shape:
        raise ShapeError(f"ids and log-probs must pair up: student {tuple(student_ids.shape)} vs "
                         f"{tuple(student_logp.shape)}, teacher {tuple(teacher_ids.shape)} vs {tuple(teacher_logp.shape)}")
    if student_ids.shape[:-1] != teacher_ids.shape[:-1]:
        raise ShapeError(f"student {tuple(student_ids.shape)} and teacher {tuple(teacher_ids.shape)} top-k lists "
                         "must cover the same positions (..., K)")
    match = student_ids.unsqueeze(-1) == teacher_ids.unsqueeze(-2)  # (..., K_s, K_t)
    shared = match.any(-1)
    neg_inf = torch.full((), float("-inf"), dtype=teacher_logp.dtype, device=teacher_logp.device)
    teacher_at_student = torch.where(match, teacher_logp.unsqueeze(-2), neg_inf).amax(-1)
    s = torch.where(shared, student_logp, torch.full_like(student_logp, float("-inf")))
    t = torch.where(shared, teacher_at_student, torch.full_like(teacher_at_student, float("-inf")))
    return shared, tail_bin(s), tail_bin(t)


@torch.no_grad()
def reverse_kl_shared_topk(
    student_ids: torch.Tensor,
    student_logp: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logp: torch.Tensor,
) -> torch.Tensor:
    """``D̂_t = KL(p_S‖p_T)`` over :func:`shared_topk_bins`' partition, detached, float32.

    A lower bound of the full-vocabulary reverse KL that is exact when the two top-k lists hold
    all the mass. Shapes: (..., K_s), (..., K_s), (..., K_t), (..., K_t) → (...).
    """
    _, s, t = shared_topk_bins(student_ids, student_logp.float(), teacher_ids, teacher_logp.float())
    return kl_bins(s, t).clamp_min(0.0)
