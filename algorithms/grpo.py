"""GRPO(+KL): group advantages, PPO clip loss, k3 KL to a reference policy, loss aggregation.

SPEC §3 steps 3–4. Notation: rewards R and group ids g have shape (B,); per-token tensors
``logp`` (log π_θ(y_t)), ``old_logp`` (log π_old), ``ref_logp`` (log π_ref), ``mask`` have shape
(B, T), padded on the right, ``mask`` = 1 on tokens the policy generated.

Signatures follow verl's ``core_algos`` (``old_log_prob, log_prob, advantages, response_mask,
loss_agg_mode``) so the verl plugin can call them unchanged; hyperparameters are keyword
arguments, never a config object; every loss returns ``(loss, metrics)`` with python floats.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from algorithms import _checks
from algorithms.errors import ShapeError

__all__ = [
    "group_index",
    "group_advantages",
    "kl_k3",
    "aggregate_loss",
    "ppo_clip_loss",
    "grpo_kl_loss",
    "entropy_from_logits",
    "masked_mean",
]

LOG_RATIO_CLAMP = 20.0
"""|log ρ| is clamped to this before exp (as verl and the SDPO reference code do) to avoid inf."""
KL_K3_CLAMP = 10.0
"""k3 is clamped to at most this, as verl's ``low_var_kl`` does (a clamped token gets no gradient)."""
DUAL_CLIP_C = 3.0
"""verl's default ``clip_ratio_c``: the dual-clip bound on −Â·ρ for negative advantages."""


def group_index(group_ids: torch.Tensor | Sequence) -> tuple[torch.Tensor, int]:
    """Map arbitrary group ids (B,) to dense indices 0..G−1; return ``(index (B,), G)``.

    Accepts an integer tensor (vectorised ``torch.unique``) or any sequence of hashables such
    as verl's uid strings (mapped in first-seen order).
    """
    if isinstance(group_ids, torch.Tensor):
        if group_ids.ndim != 1:
            raise ShapeError(f"group_ids must be 1-D (B,), got shape {tuple(group_ids.shape)}")
        _, inv = torch.unique(group_ids, return_inverse=True)
        n = int(inv.max()) + 1 if inv.numel() else 0
        return inv.long(), n
    ids = list(group_ids)
    table: dict = {}
    idx = [table.setdefault(g, len(table)) for g in ids]
    return torch.tensor(idx, dtype=torch.long), len(table)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ m·x / max(Σ m, 1) (ours; 0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor | Sequence,
    *,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO group-relative advantage, one scalar per sample.

    ``A_i = (R_i − mean_G R) / (std_G R + eps)`` if ``norm_by_std`` else ``A_i = R_i − mean_G R``,
    where G is the group (same ``group_ids``) of sample i and std is the unbiased (Bessel) sample
    standard deviation, as in verl's ``compute_grpo_outcome_advantage`` and torch.std.
    A group of one sample gets ``A_i = 0`` (no contrast; ours — verl instead passes R_i through).

    Shapes: rewards (B,), group_ids (B,) ints or hashables → adv (B,) float32, detached.
    Source: GRPO (Shao et al. 2024, DeepSeekMath); std switch as verl ``norm_adv_by_std_in_grpo``.
    Vectorised with ``index_add_`` (no per-group python loop).
    """
    _checks.ndim("rewards", rewards, 1)
    _checks.finite("rewards", rewards)
    if eps < 0:
        raise ShapeError(f"eps must be >= 0, got {eps}")
    idx, n_groups = group_index(group_ids)
    if idx.shape[0] != rewards.shape[0]:
        raise ShapeError(
            f"group_ids has {idx.shape[0]} entries but rewards has {rewards.shape[0]}; need one per sample"
        )
    r = rewards.detach().to(torch.float64)
    idx = idx.to(r.device)
    count = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, idx, torch.ones_like(r))
    mean = torch.zeros_like(count).index_add_(0, idx, r) / count
    dev = r - mean[idx]
    sq = torch.zeros_like(count).index_add_(0, idx, dev * dev)
    std = torch.sqrt(sq / (count - 1).clamp_min(1.0))
    if norm_by_std:
        denom = std[idx] + eps
        # a zero-std group has dev ≡ 0; keep A = 0 even with eps = 0 (no 0/0)
        adv = torch.where(denom > 0, dev / denom.clamp_min(1e-300), torch.zeros_like(dev))
    else:
        adv = dev
    single = count[idx] < 2
    adv = torch.where(single, torch.zeros_like(adv), adv)
    adv = adv.to(torch.float32)
    metrics = {
        "grpo/num_groups": float(n_groups),
        "grpo/num_singleton_groups": float((count < 2).sum()),
        "grpo/frac_zero_std_groups": float(((std == 0) & (count >= 2)).double().mean()) if n_groups else 0.0,
        "grpo/reward_mean": float(r.mean()) if r.numel() else 0.0,
        "grpo/adv_abs_mean": float(adv.abs().mean()) if adv.numel() else 0.0,
    }
    return adv, metrics


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π_θ‖π_ref) at the sampled token.

    ``k3 = exp(d) − d − 1`` with ``d = log π_ref(y_t) − log π_θ(y_t)``; unbiased for the KL when
    y_t ~ π_θ and ≥ 0 pointwise (exp(d) ≥ 1 + d). Computed as ``expm1(d) − d`` for accuracy,
    with d clamped to ±20 and the result to [0, 10] as verl's ``low_var_kl`` does (a token past
    10 contributes 10 and no gradient). Gradient flows through ``logp`` (and ``ref_logp`` if it
    requires grad; the caller normally passes it detached).

    Shapes: any, equal → same shape. Source: Schulman, "Approximating KL divergence" (2020);
    clamps as verl ``kl_penalty(..., "low_var_kl")``.
    """
    _checks.same_shape(logp=logp, ref_logp=ref_logp)
    _checks.finite("logp", logp)
    _checks.finite("ref_logp", ref_logp)
    d = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (torch.expm1(d) - d).clamp(0.0, KL_K3_CLAMP)


def aggregate_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token-mean",
    *,
    batch_num_tokens: float | None = None,
    global_batch_size: float | None = None,
    dp_size: int = 1,
) -> torch.Tensor:
    """Reduce a per-token loss (B, T) to a scalar with verl's ``loss_agg_mode`` names.

    With m the mask, L_i = Σ_t m_it ℓ_it, n_i = Σ_t m_it, S = #{i : n_i > 0} and D = ``dp_size``:

    - ``token-mean``: D · Σ_i L_i / N_tok, N_tok = ``batch_num_tokens`` or Σ m (SPEC §3.4 default)
    - ``token-sum``: D · Σ_i L_i
    - ``seq-mean-token-sum``: D · Σ_i L_i / B'
    - ``seq-mean-token-mean``: D · Σ_{i: n_i>0} (L_i / n_i) / B'
    - ``seq-mean-token-sum-norm``: D · Σ_i L_i / B' / T  (T = the padded length)

    B' = ``global_batch_size`` or S (sequences without tokens do not count). The data-parallel
    factor D makes DP's gradient average restore the global sum or mean. As verl's ``agg_loss``,
    except that a zero count gives 0 here instead of NaN.
    Source: verl ``core_algos.agg_loss`` (names and semantics).
    """
    _checks.agg_mode(mode)
    _checks.ndim("loss_mat", loss_mat, 2)
    m = _checks.positive_mask("mask", mask, loss_mat)
    scale = float(dp_size)
    if mode == "token-mean":
        denom = torch.as_tensor(batch_num_tokens, dtype=loss_mat.dtype) if batch_num_tokens is not None else m.sum()
        return (loss_mat * m).sum() / denom.clamp_min(1.0) * scale  # counts are whole: 1 only guards 0
    if mode == "token-sum":
        return (loss_mat * m).sum() * scale
    tokens = m.sum(dim=-1)
    seq = (loss_mat * m).sum(dim=-1)
    if mode == "seq-mean-token-mean":
        seq = seq / tokens.clamp_min(1e-8)
    sequences = torch.as_tensor(global_batch_size, dtype=loss_mat.dtype) if global_batch_size is not None \
        else (tokens > 0).sum().to(loss_mat.dtype)
    loss = seq.sum() / sequences.clamp_min(1.0) * scale
    return loss / loss_mat.shape[-1] if mode == "seq-mean-token-sum-norm" else loss


def _token_adv(adv: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast advantages (B,) → (B, T); pass (B, T) through; detached."""
    if adv.ndim == 1 and adv.shape[0] == like.shape[0]:
        return adv.detach().to(like.dtype).unsqueeze(-1).expand_as(like)
    if adv.shape == like.shape:
        return adv.detach().to(like.dtype)
    raise ShapeError(f"adv must have shape ({like.shape[0]},) or {tuple(like.shape)}, got {tuple(adv.shape)}")


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_lo: float,
    eps_hi: float,
    clip_ratio_c: float | None = DUAL_CLIP_C,
    loss_agg_mode: str = "token-mean",
    batch_num_tokens: float | None = None,
    global_batch_size: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level PPO clipped surrogate with asymmetric clip range and dual clip (loss to minimise).

    ``ρ_t = exp(logp_t − old_logp_t)`` (log-ratio clamped to ±20),
    ``ℓ_t = max(−Â_t ρ_t, −Â_t clip(ρ_t, 1 − ε_lo, 1 + ε_hi))``, and for Â_t < 0 the dual clip
    ``ℓ_t ← min(ℓ_t, −Â_t c)`` (c = ``clip_ratio_c`` > 1, None = off), aggregated by ``loss_agg_mode``.
    On-policy (ρ = 1, one epoch on fresh rollouts) the dual clip is inert.

    Shapes: logp, old_logp, mask (B, T); adv (B,) broadcast over T, or (B, T) (SGCD's w·A).
    Gradient flows through ``logp`` only; ``old_logp`` and ``adv`` are detached.
    Metrics: ``pg_clipfrac_high`` (Â>0 and ρ>1+ε_hi: the clip is active), ``pg_clipfrac_low``
    (Â<0 and ρ<1−ε_lo), ``pg_clipfrac`` (their sum), ``ppo_kl`` = mean(old_logp − logp) (k1
    estimate of KL(π_old‖π_θ)), ratio mean/max — all masked means over tokens.
    Source: PPO (Schulman et al. 2017); asymmetric clip "clip-higher" from DAPO (Yu et al. 2025);
    dual clip (Ye et al. 2020, arXiv 1912.09729) with verl's default c = 3; metric names as verl
    ``compute_policy_loss_vanilla``.
    """
    _checks.same_shape(logp=logp, old_logp=old_logp, mask=mask)
    _checks.ndim("logp", logp, 2)
    for name, t in (("logp", logp), ("old_logp", old_logp), ("adv", adv)):
        _checks.finite(name, t)
    if not (0.0 <= eps_lo < 1.0):
        raise ShapeError(f"eps_lo must be in [0, 1), got {eps_lo}")
    if eps_hi < 0.0:
        raise ShapeError(f"eps_hi must be >= 0, got {eps_hi}")
    if clip_ratio_c is not None and not clip_ratio_c > 1.0:
        raise ShapeError(f"clip_ratio_c must be > 1 (or None), got {clip_ratio_c}")
    m = _checks.positive_mask("mask", mask, logp)
    a = _token_adv(adv, logp)
    log_ratio = (logp - old_logp.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    pg1 = -a * ratio
    pg2 = -a * ratio.clamp(1.0 - eps_lo, 1.0 + eps_hi)
    loss_mat = torch.maximum(pg1, pg2)
    if clip_ratio_c is not None:
        loss_mat = torch.where(a < 0, torch.minimum(loss_mat, -a * clip_ratio_c), loss_mat)
    loss = aggregate_loss(loss_mat, m, loss_agg_mode, batch_num_tokens=batch_num_tokens,
                          global_batch_size=global_batch_size)
    with torch.no_grad():
        r = ratio.detach()
        hi = ((a > 0) & (r > 1.0 + eps_hi)).to(m.dtype)
        lo = ((a < 0) & (r < 1.0 - eps_lo)).to(m.dtype)
        dual = ((a < 0) & (r > (clip_ratio_c if clip_ratio_c is not None else math.inf))).to(m.dtype)
        any_tok = bool(m.sum() > 0)
        metrics = {
            "actor/pg_clipfrac_dual": float(masked_mean(dual, m)),
            "actor/pg_loss": float(loss.detach()),
            "actor/pg_clipfrac_high": float(masked_mean(hi, m)),
            "actor/pg_clipfrac_low": float(masked_mean(lo, m)),
            "actor/pg_clipfrac": float(masked_mean(hi + lo, m)),
            "actor/ppo_kl": float(masked_mean(-log_ratio.detach(), m)),
            "actor/ratio_mean": float(masked_mean(r, m)),
            "actor/ratio_max": float(r[m > 0].max()) if any_tok else 1.0,
            "actor/num_tokens": float(m.sum()),
        }
    return loss, metrics


def grpo_kl_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    adv: torch.Tensor,
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
    """GRPO+KL actor loss, the matched comparator (SPEC §3.4) and SGCD's unchanged loss.

    ``L = agg(ℓ^PPO) + β_KL · agg(k3(logp, ref_logp))``, both aggregated with ``loss_agg_mode``
    over ``mask``. ``batch_num_tokens`` / ``global_batch_size``: the whole batch's token / sequence
    counts when this call sees one micro-batch (see :func:`aggregate_loss`), so the micro-batch
    losses sum to the full-batch loss. ``adv`` is (B,) for GRPO or (B, T) for SGCD's ``w·A``.
    Gradient through ``logp`` only (``old_logp``, ``ref_logp``, ``adv`` detached).
    Source: GRPO (Shao et al. 2024) with the KL as a loss term (verl ``use_kl_loss``,
    ``kl_loss_type=low_var_kl``); β_KL is our choice (SGCD does not state it).
    """
    if beta_kl < 0:
        raise ShapeError(f"beta_kl must be >= 0, got {beta_kl}")
    _checks.same_shape(logp=logp, ref_logp=ref_logp)
    pg, metrics = ppo_clip_loss(
        logp, old_logp, adv, mask, eps_lo=eps_lo, eps_hi=eps_hi, clip_ratio_c=clip_ratio_c, loss_agg_mode=loss_agg_mode,
        batch_num_tokens=batch_num_tokens, global_batch_size=global_batch_size,
    )
    kl_mat = kl_k3(logp, ref_logp.detach())
    m = _checks.positive_mask("mask", mask, logp)
    kl = aggregate_loss(kl_mat, m, loss_agg_mode, batch_num_tokens=batch_num_tokens,
                        global_batch_size=global_batch_size)
    loss = pg + beta_kl * kl
    metrics["actor/kl_loss"] = float(kl.detach())
    metrics["actor/kl_coef"] = float(beta_kl)
    metrics["actor/loss"] = float(loss.detach())
    return loss, metrics


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last axis: ``H = logsumexp(z) − Σ_v softmax(z)_v z_v``.

    Shapes: (..., V) → (...) float32 (computed in float32 for bf16/fp16 inputs). Differentiable;
    detach the result for logging. Source: standard identity (verl ``entropy_from_logits``).
    """
    _checks.finite("logits", logits)
    z = logits.float()
    return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1)
