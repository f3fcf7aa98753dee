"""SGCD credit assignment: divergence features → bounded, detached token weights → w·A.

SPEC §3.5 d–f. The loss stays the unchanged GRPO+KL loss (:func:`algorithms.grpo.grpo_kl_loss`)
fed with Â_{i,t} = w_{i,t}·A_i; distillation only moves credit between the tokens of a
trajectory, it never adds a loss term. Source: SGCD abstract ("bounded, detached credit weights
reshape GRPO token advantages", "dense reverse KL and entropy credit features", "token-level
weight clipping", per the digests in research/papers.md §1.1–1.2). The exact formulas below are
OUR reconstruction (papers.md §1.4 [INF]); the defaults γ = 0, β = 1, [0.5, 2] are ours.
"""

from __future__ import annotations

import torch

from algorithms import _checks
from algorithms.errors import ShapeError
from algorithms.grpo import DUAL_CLIP_C

__all__ = ["credit_scores", "credit_weights", "weighted_advantages", "sgcd_loss"]

_BISECT_STEPS = 60
_MEAN_TOL = 1e-6


def credit_scores(kl: torch.Tensor, entropy: torch.Tensor, *, gamma: float = 0.0) -> torch.Tensor:
    """Per-token credit score ``s_t = D_t + γ·H_t`` (detached, float32).

    Shapes: kl, entropy (B, T) (or any equal shape) → same. Both inputs are ≥ 0, so s ≥ 0 for
    γ ≥ 0. Source: SGCD digest (reverse KL and entropy as credit features); the linear
    combination and γ = 0 default are ours.
    """
    _checks.same_shape(kl=kl, entropy=entropy)
    _checks.finite("kl", kl)
    _checks.finite("entropy", entropy)
    if not (gamma >= 0.0) or gamma != gamma or gamma == float("inf"):
        raise ShapeError(f"gamma must be a finite number >= 0, got {gamma!r}")
    if bool((kl < -1e-6).any()) or bool((entropy < -1e-6).any()):
        raise ShapeError("kl and entropy must be >= 0 (a divergence and an entropy)")
    return (kl.detach().float().clamp_min(0.0) + gamma * entropy.detach().float().clamp_min(0.0))


@torch.no_grad()
def credit_weights(
    scores: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 1.0,
    w_min: float = 0.5,
    w_max: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Bounded token weights with trajectory mean 1 (SPEC §3.5e).

    Per trajectory i over its masked tokens (μ_i = masked mean of s_i):

    1. ``z_t = s_t / μ_i``
    2. ``u_t = clip(1 + β (z_t − 1), w_min, w_max)``
    3. ``w_t = clip(c_i · u_t, w_min, w_max)`` with the scalar c_i > 0 chosen so that the masked
       mean of w_i is 1. "Rescale to mean 1, then clip again" done as a projection: g(c) =
       mean(clip(c·u)) is continuous and non-decreasing with g(0⁺) = w_min ≤ 1 ≤ w_max = g(∞),
       so a root exists; it is found by bisection on log c (60 steps, float64). If step 2 already
       has mean 1 (no token clipped), c_i = 1 exactly.

    Guarantees (tested): w is detached, finite, ``w_min ≤ w ≤ w_max`` on masked tokens; masked
    mean = 1 within 1e-6 for every trajectory with ≥ 1 masked token (attainable because
    w_min ≤ 1 ≤ w_max); within a trajectory w is non-decreasing in s (c_i > 0 and clip preserve
    order); w > 0 so w·A never flips the sign of A. Trajectories whose masked scores are all
    equal, all zero (μ_i = 0) or with β = 0 get exactly 1. Off-mask tokens get w = 1 (neutral:
    the loss masks them anyway and ``w·A`` equals A there), and rows with no masked token are
    all ones.

    Shapes: scores, mask (B, T) → w (B, T) float32 detached. Source: SPEC §3.5e; our
    reconstruction of the paper's bounded weights (papers.md §1.4 [INF]); defaults ours.
    """
    _checks.ndim("scores", scores, 2)
    _checks.finite("scores", scores)
    m = _checks.positive_mask("mask", mask, scores.float()) > 0
    if not (beta >= 0.0) or beta == float("inf"):
        raise ShapeError(f"beta must be a finite number >= 0, got {beta!r}")
    if not (0.0 < w_min <= 1.0 <= w_max < float("inf")):
        raise ShapeError(
            f"need 0 < w_min <= 1 <= w_max < inf so a trajectory mean of 1 is attainable; "
            f"got w_min={w_min!r}, w_max={w_max!r}"
        )
    s = scores.detach().to(torch.float64)
    if bool((s[m] < 0).any()):
        raise ShapeError("scores must be >= 0 on masked tokens (s = D + γH with D, H, γ >= 0)")
    mf = m.to(s.dtype)
    n_tok = mf.sum(-1)
    mu = (s * mf).sum(-1) / n_tok.clamp_min(1.0)
    s_max = torch.where(m, s, torch.full_like(s, -torch.inf)).amax(-1)
    s_min = torch.where(m, s, torch.full_like(s, torch.inf)).amin(-1)
    uniform = (n_tok == 0) | (mu <= 0) | (s_max - s_min <= 1e-12 * mu.abs().clamp_min(1e-300)) | (beta == 0)

    z = s / mu.clamp_min(1e-300).unsqueeze(-1)
    u = (1.0 + beta * (z - 1.0)).clamp(w_min, w_max)
    u = torch.where(m, u, torch.ones_like(u))

    def mean_w(c: torch.Tensor) -> torch.Tensor:
        return ((c.unsqueeze(-1) * u).clamp(w_min, w_max) * mf).sum(-1) / n_tok.clamp_min(1.0)

    one = torch.ones_like(mu)
    needs = ~uniform & ((mean_w(one) - 1.0).abs() > 1e-12)
    c = one.clone()
    if bool(needs.any()):
        u_max = torch.where(m, u, torch.zeros_like(u)).amax(-1)
        u_min = torch.where(m, u, torch.full_like(u, torch.inf)).amin(-1)
        lo = torch.log(w_min / u_max)  # every c·u ≤ w_min → mean w_min ≤ 1
        hi = torch.log(w_max / u_min)  # every c·u ≥ w_max → mean w_max ≥ 1
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            below = mean_w(torch.exp(mid)) < 1.0
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        c = torch.where(needs, torch.exp(0.5 * (lo + hi)), one)
    w = (c.unsqueeze(-1) * u).clamp(w_min, w_max)
    w = torch.where(m & ~uniform.unsqueeze(-1), w, torch.ones_like(w))
    w32 = w.to(torch.float32)

    wm = w[m]
    any_tok = wm.numel() > 0
    rows = n_tok > 0
    row_mean = (w * mf).sum(-1) / n_tok.clamp_min(1.0)
    metrics = {
        "sgcd/w_mean": float(wm.mean()) if any_tok else 1.0,
        "sgcd/w_std": float(wm.std(unbiased=False)) if any_tok else 0.0,
        "sgcd/w_min": float(wm.min()) if any_tok else 1.0,
        "sgcd/w_max": float(wm.max()) if any_tok else 1.0,
        "sgcd/frac_at_w_min": float((wm <= w_min + 1e-9).double().mean()) if any_tok else 0.0,
        "sgcd/frac_at_w_max": float((wm >= w_max - 1e-9).double().mean()) if any_tok else 0.0,
        "sgcd/rows_uniform": float((uniform & rows).sum()),
        "sgcd/rows_rescaled": float(needs.sum()),
        "sgcd/max_row_mean_err": float((row_mean[rows] - 1.0).abs().max()) if bool(rows.any()) else 0.0,
        "sgcd/score_mean": float(s[m].mean()) if any_tok else 0.0,
    }
    return w32, metrics


def weighted_advantages(adv: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """SGCD token advantages ``Â_{i,t} = w_{i,t} · A_i`` (SPEC §3.5f).

    Shapes: adv (B,) or (B, T), w (B, T) → (B, T). Both are detached (advantages and weights
    carry no gradient). Since w > 0, sign(Â) = sign(A). Source: SGCD abstract (weights
    "reshape GRPO token advantages").
    """
    _checks.ndim("w", w, 2)
    _checks.finite("adv", adv)
    _checks.finite("w", w)
    if bool((w <= 0).any()):
        raise ShapeError("credit weights must be > 0 so the advantage sign is never flipped")
    if adv.ndim == 1 and adv.shape[0] == w.shape[0]:
        return adv.detach().to(w.dtype).unsqueeze(-1) * w.detach()
    if adv.shape == w.shape:
        return adv.detach().to(w.dtype) * w.detach()
    raise ShapeError(f"adv must have shape ({w.shape[0]},) or {tuple(w.shape)}, got {tuple(adv.shape)}")


def sgcd_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    adv: torch.Tensor,
    w: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_lo: float,
    eps_hi: float,
    beta_kl: float,
    clip_ratio_c: float | None = DUAL_CLIP_C,
    loss_agg_mode: str = "token-mean",
    batch_num_tokens: float | None = None,
    global_batch_size: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SGCD actor loss = the unchanged GRPO+KL loss with ``Â = w·A`` (no distillation term).

    ``L = agg(max(−Â ρ, −Â clip(ρ, 1−ε_lo, 1+ε_hi))) + β_KL · agg(k3)``; w and A detached, so
    ∇L = the GRPO+KL gradient with each token's advantage scaled by w. With w ≡ 1 it is exactly
    :func:`algorithms.grpo.grpo_kl_loss`. Source: SPEC §3.5f.
    """
    from algorithms.grpo import grpo_kl_loss

    return grpo_kl_loss(
        logp, old_logp, ref_logp, weighted_advantages(adv, w), mask,
        eps_lo=eps_lo, eps_hi=eps_hi, beta_kl=beta_kl, clip_ratio_c=clip_ratio_c, loss_agg_mode=loss_agg_mode,
        batch_num_tokens=batch_num_tokens, global_batch_size=global_batch_size,
    )
