"""SGCD credit weights on verl's driver: teacher log-probs → ``algorithms.sgcd`` → ``advantages ← w·A``.

Runs after verl has computed GRPO advantages (``compute_advantage`` / the v1 trainer's
``_compute_advantage``). The weights are detached and written into the batch, so verl's stock
``vanilla`` PPO loss — and its KL loss, clipping and global-batch aggregation — run unchanged on
FSDP and on Megatron (SPEC §3.5f, research/verl.md §1.5).

Divergence estimator (documented in ``algorithm.sgcd.divergence_estimator``): verl's
``compute_log_prob`` returns log π(y_t) of the *sampled* token only, so the full-vocabulary
``D_t = KL(π_θ(·|s_t) ‖ π_T(·|s_t, ref))`` of the local trainer is replaced by its k3 sampled-token
estimate ``D̂_t = exp(d_t) − d_t − 1``, ``d_t = log π_T(y_t) − log π_θ(y_t)``, which is unbiased
for D_t when y_t ~ π_θ and never negative (Schulman 2020, "Approximating KL divergence").
Here π_θ is π_old: verl's ``old_log_probs`` are the log-probs of the weights that sampled the
batch, which is also the policy the teacher is run with.
"""

from __future__ import annotations

import torch

from algorithms import grpo, sgcd
from verl import DataProto

from adapters.verl.config import SGCDSection

REQUIRED_KEYS: tuple[str, ...] = ("advantages", "response_mask", "old_log_probs")


def sampled_token_divergence(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(π_θ‖π_T) per sampled token, detached: ``exp(d) − d − 1``, d = teacher − student.

    Shapes: (B, T) each → (B, T). Delegates to ``algorithms.grpo.kl_k3`` (same estimator as the
    GRPO KL term, with the teacher in the reference's place).
    """
    with torch.no_grad():
        return grpo.kl_k3(student_logp.detach().float(), teacher_logp.detach().float())


def apply_credit_weights(
    data: DataProto,
    teacher_log_probs: torch.Tensor,
    section: SGCDSection,
    *,
    has_reference: torch.Tensor | None = None,
) -> dict[str, float]:
    """Compute SGCD weights and write ``advantages ← w·A`` and ``credit_weights ← w`` into ``data``.

    ``data.batch`` must hold ``advantages`` (B, T) (verl's GRPO output), ``response_mask`` and
    ``old_log_probs`` (B, T); ``entropy`` (B, T) is used when ``section.gamma > 0``.
    ``teacher_log_probs`` (B, T): log π_T(y_t | s_t, credit reference) on the same response tokens.
    ``has_reference`` (B,) bool: rows whose group got no credit reference (summarizer failure,
    no success/failure contrast) keep w = 1 (SPEC §3.5b fallback); default all True.

    Pipeline (each step an ``algorithms`` function): D̂ = kl_k3(old_logp, teacher_logp);
    s = credit_scores(D̂, H; γ); (w, m) = credit_weights(s, mask; β, w_min, w_max);
    Â = weighted_advantages(A, w). Returns metrics prefixed ``sgcd/``.
    """
    missing = [k for k in REQUIRED_KEYS if k not in data.batch.keys()]
    if missing:
        raise KeyError(f"apply_credit_weights: data.batch lacks {missing}; it has {sorted(data.batch.keys())}")
    adv = data.batch["advantages"]
    mask = data.batch["response_mask"].to(adv.dtype)
    old_logp = data.batch["old_log_probs"]
    if teacher_log_probs.shape != old_logp.shape:
        raise ValueError(
            f"teacher_log_probs has shape {tuple(teacher_log_probs.shape)}, expected old_log_probs' "
            f"{tuple(old_logp.shape)} (same response tokens)"
        )
    divergence = sampled_token_divergence(old_logp, teacher_log_probs) * mask
    entropy = data.batch["entropy"] if "entropy" in data.batch.keys() else torch.zeros_like(divergence)
    scores = sgcd.credit_scores(divergence, entropy.detach().clamp_min(0.0) * mask, gamma=section.gamma)
    weights, metrics = sgcd.credit_weights(scores, mask, **section.credit_kwargs())
    if has_reference is not None:
        keep = has_reference.to(torch.bool).to(weights.device).unsqueeze(-1)
        weights = torch.where(keep, weights, torch.ones_like(weights))
        metrics = dict(metrics, **{"sgcd/frac_groups_without_reference": float((~keep).float().mean())})
    new_adv = sgcd.weighted_advantages(adv, weights)
    data.batch["advantages"] = (new_adv * mask).to(adv.dtype)
    data.batch["credit_weights"] = weights.detach().to(adv.dtype)
    out = {k if k.startswith("sgcd/") else f"sgcd/{k}": float(v) for k, v in metrics.items()}
    out["sgcd/divergence_mean"] = float(grpo.masked_mean(divergence, mask))
    return out
