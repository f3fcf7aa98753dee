"""SGCD credit weights on verl's driver: per-token divergences → ``algorithms.sgcd`` → ``advantages ← w·A``.

Runs after verl has computed GRPO advantages (``compute_advantage`` / the v1 trainer's
``_compute_advantage``). The weights are detached and written into the batch, so verl's stock
``vanilla`` PPO loss — and its KL loss, clipping and global-batch aggregation — run unchanged on
FSDP and on Megatron (SPEC §3.5f, research/verl.md §1.5).

The divergence D_t = KL(π_old(·|s_t) ‖ π_T(·|s_t, ref)) comes from one of three estimators
(``algorithm.sgcd.divergence_estimator``, dispatched by :class:`adapters.verl.trainer.SGCDTrainerSync`):

- ``exact`` (default, FSDP): the full-vocabulary KL of the local trainer, from the actor's logits
  of the student's and the teacher's context side by side (:func:`adapters.verl.losses.pair_divergence`).
- ``shared_topk`` (Megatron): the rollout server scores the student's and the teacher's context
  on the same response tokens with ``prompt_logprobs=k`` (:mod:`adapters.verl.scoring`), and
  D̂_t is the reverse KL over the partition "tokens in both top-k lists, one bin each, plus the
  rest" (:func:`algorithms.topk.reverse_kl_shared_topk`): a lower bound of the full-vocabulary
  KL of the local trainer that is exact when the lists hold all the mass.
- ``k3_sampled_token``: the teacher's log-prob of the sampled token only (the actor's
  ``compute_log_prob``), ``D̂_t = exp(d) − d − 1``, ``d = log π_T(y_t) − log π_old(y_t)``:
  unbiased for D_t under y_t ~ π_old (Schulman 2020), but one sample per token, so z = s/mean(s)
  is dominated by its noise (:func:`sampled_token_divergence`).

``tests/verl/test_cross_path_agreement.py`` measures each against the local trainer's weights.
"""

from __future__ import annotations

import torch

from algorithms import grpo, sgcd
from verl import DataProto

from adapters.verl.config import SGCDSection

REQUIRED_KEYS: tuple[str, ...] = ("advantages", "response_mask")


def sampled_token_divergence(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(π_θ‖π_T) per sampled token, detached: ``exp(d) − d − 1``, d = teacher − student.

    Shapes: (B, T) each → (B, T). Delegates to ``algorithms.grpo.kl_k3`` (same estimator as the
    GRPO KL term, with the teacher in the reference's place).
    """
    with torch.no_grad():
        return grpo.kl_k3(student_logp.detach().float(), teacher_logp.detach().float())


def apply_credit_weights(
    data: DataProto,
    divergence: torch.Tensor,
    section: SGCDSection,
    *,
    has_reference: torch.Tensor | None = None,
) -> dict[str, float]:
    """Compute SGCD weights and write ``advantages ← w·A`` and ``credit_weights ← w`` into ``data``.

    ``data.batch`` must hold ``advantages`` (B, T) (verl's GRPO output) and ``response_mask``;
    ``entropy`` (B, T) (verl's old-policy entropy) is used when ``section.gamma > 0``.
    ``divergence`` (B, T): D̂_t ≥ 0 per response token (either estimator above).
    ``has_reference`` (B,) bool: rows whose group got no credit reference (summarizer failure,
    no success/failure contrast) or whose teacher context could not be scored keep w = 1
    (SPEC §3.5b fallback); default all True.

    Pipeline (each step an ``algorithms`` function): s = credit_scores(D̂, H; γ);
    (w, m) = credit_weights(s, mask; β, w_min, w_max); Â = weighted_advantages(A, w).
    Returns metrics prefixed ``sgcd/``.
    """
    missing = [k for k in REQUIRED_KEYS if k not in data.batch.keys()]
    if missing:
        raise KeyError(f"apply_credit_weights: data.batch lacks {missing}; it has {sorted(data.batch.keys())}")
    adv = data.batch["advantages"]
    mask = data.batch["response_mask"].to(adv.dtype)
    if divergence.shape != adv.shape:
        raise ValueError(f"divergence has shape {tuple(divergence.shape)}, expected the advantages' "
                         f"{tuple(adv.shape)} (same response tokens)")
    divergence = divergence.detach().float().to(adv.device) * mask
    entropy = data.batch["entropy"] if "entropy" in data.batch.keys() else torch.zeros_like(divergence)
    scores = sgcd.credit_scores(divergence, entropy.detach().float().clamp_min(0.0) * mask, gamma=section.gamma)
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
