"""SGCD through verl's own functions == SGCD through ``algorithms`` on the same numbers.

verl side: real ``DataProto`` → verl ``compute_advantage`` (GRPO) → our
``adapters.verl.credit.apply_credit_weights`` (writes w·A) → verl's engine-level ``ppo_loss``
(vanilla PPO clip + low_var_kl KL loss, token-mean) on the jagged micro-batch the engines use.
Local side: ``algorithms.grpo.group_advantages`` → ``kl_k3`` → ``algorithms.sgcd`` → ``grpo_kl_loss``.
"""

from __future__ import annotations

import pytest
import torch
from verl_required import verl  # noqa: F401  (skip / fail guard)

import _batch as B
from adapters.verl.config import BenchAlgoConfig, SGCDSection
from adapters.verl.credit import apply_credit_weights, sampled_token_divergence
from algorithms import grpo, sgcd
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.workers.config.actor import ActorConfig, PolicyLossConfig
from verl.workers.utils.losses import ppo_loss

EPS_LO, EPS_HI, BETA_KL = 0.2, 0.28, 0.05


def _actor_config() -> ActorConfig:
    return ActorConfig(
        strategy="fsdp", rollout_n=3, ppo_micro_batch_size_per_gpu=1, clip_ratio=EPS_LO, clip_ratio_low=EPS_LO,
        clip_ratio_high=EPS_HI, loss_agg_mode="token-mean", use_kl_loss=True, kl_loss_type="low_var_kl",
        kl_loss_coef=BETA_KL, entropy_coeff=0.0, policy_loss=PolicyLossConfig(loss_mode="vanilla"),
    )


SPREADS = {"narrow": (0.1, 0.15), "wide": (4.0, 2.5)}
"""(ref, student) log-prob noise around π_old: "wide" reaches ρ > 3 on negative advantages (the
dual clip) and k3 > 10 (verl's clamp)."""


def _numbers(seed: int, spread: str = "narrow"):
    ref_sd, logp_sd = SPREADS[spread]
    mask = B.response_mask()
    old = B.log_probs(seed)
    teacher = (old + 0.4 * torch.randn(old.shape, generator=torch.Generator().manual_seed(seed + 1))) * mask
    teacher = teacher.clamp(max=0.0)
    entropy = (B.log_probs(seed + 2).neg() * 2.0) * mask
    ref = (old + ref_sd * torch.randn(old.shape, generator=torch.Generator().manual_seed(seed + 3))) * mask
    logp = (old + logp_sd * torch.randn(old.shape, generator=torch.Generator().manual_seed(seed + 4))) * mask
    return mask, old, teacher, entropy, ref, logp


def _verl_side(section: SGCDSection, seed: int, has_reference=None, spread: str = "narrow"):
    mask, old, teacher, entropy, ref, logp = _numbers(seed, spread)
    data = B.dataproto(old_log_probs=old, entropy=entropy)
    algo = BenchAlgoConfig(adv_estimator="grpo", method="sgcd", sgcd=section)
    data = compute_advantage(data, adv_estimator="grpo", num_repeat=3, norm_adv_by_std_in_grpo=True, config=algo)
    divergence = sampled_token_divergence(data.batch["old_log_probs"], teacher)
    metrics = apply_credit_weights(data, divergence, section, has_reference=has_reference)
    micro = B.micro_batch(
        {"response_mask": mask, "old_log_probs": old, "advantages": data.batch["advantages"], "ref_log_prob": ref,
         "credit_weights": data.batch["credit_weights"]}
    )
    student = logp.clone().requires_grad_(True)
    loss, _ = ppo_loss(_actor_config(), {"log_probs": B.packed_model_log_probs(student)}, micro)
    loss.backward()
    return data, loss, student.grad, metrics


def _local_side(section: SGCDSection, seed: int, has_reference=None, spread: str = "narrow"):
    mask, old, teacher, entropy, ref, logp = _numbers(seed, spread)
    adv, _ = grpo.group_advantages(B.REWARDS, list(B.UIDS), norm_by_std=True, eps=1e-6)
    kl = grpo.kl_k3(old, teacher) * mask
    scores = sgcd.credit_scores(kl, entropy, gamma=section.gamma)
    w, _ = sgcd.credit_weights(scores, mask, beta=section.beta, w_min=section.w_min, w_max=section.w_max)
    if has_reference is not None:
        w = torch.where(has_reference.unsqueeze(-1), w, torch.ones_like(w))
    adv_hat = sgcd.weighted_advantages(adv, w)
    student = logp.clone().requires_grad_(True)
    loss, _ = grpo.grpo_kl_loss(
        student, old, ref, adv_hat, mask, eps_lo=EPS_LO, eps_hi=EPS_HI, beta_kl=BETA_KL, loss_agg_mode="token-mean"
    )
    loss.backward()
    return w, adv_hat, loss, student.grad


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_verl_loss_equals_algorithms_loss(seed: int, gamma: float) -> None:
    section = SGCDSection(gamma=gamma, beta=1.0, w_min=0.5, w_max=2.0)
    data, loss_v, grad_v, metrics = _verl_side(section, seed)
    w, adv_hat, loss_l, grad_l = _local_side(section, seed)
    mask = B.response_mask()
    torch.testing.assert_close(data.batch["credit_weights"] * mask, w * mask, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(data.batch["advantages"], adv_hat * mask, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss_v.detach(), loss_l.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad_v * mask, grad_l * mask, atol=1e-7, rtol=1e-5)
    assert metrics["sgcd/max_row_mean_err"] < 1e-5
    # the weights really reshaped the advantages (not an identity pass-through)
    assert float((w * mask - mask).abs().max()) > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_inputs_reach_the_dual_clip_and_the_kl_clamp_and_still_agree(seed: int) -> None:
    section = SGCDSection(beta=1.0)
    data, loss_v, grad_v, _ = _verl_side(section, seed, spread="wide")
    w, adv_hat, loss_l, grad_l = _local_side(section, seed, spread="wide")
    mask, old, _, _, ref, logp = _numbers(seed, "wide")
    ratio = torch.exp(logp - old)
    assert bool((((adv_hat < 0) & (ratio > 3.0)) * mask).any()), "no token reaches the dual clip"
    assert bool(((grpo.kl_k3(logp, ref) >= grpo.KL_K3_CLAMP) * mask).any()), "no token reaches k3 = 10"
    torch.testing.assert_close(loss_v.detach(), loss_l.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_v * mask, grad_l * mask, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean",
                                  "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("global_counts", [False, True])
def test_aggregation_equals_verls_agg_loss(mode: str, global_counts: bool) -> None:
    from verl.trainer.ppo.core_algos import agg_loss

    mask = B.response_mask()
    mask[2] = 0.0  # a sequence without tokens: verl leaves it out of the sequence means
    loss_mat = torch.randn(mask.shape, generator=torch.Generator().manual_seed(7))
    counts = dict(batch_num_tokens=int(mask.sum()) * 2, global_batch_size=11, dp_size=2) if global_counts else {}
    ours = grpo.aggregate_loss(loss_mat, mask, mode, **counts)
    theirs = agg_loss(loss_mat, mask, mode, **counts)
    torch.testing.assert_close(ours, theirs.to(ours.dtype), atol=1e-6, rtol=1e-6)


def test_rows_without_reference_keep_plain_grpo_advantages() -> None:
    section = SGCDSection()
    has_ref = torch.tensor([True, True, True, False, False, False])
    data, loss_v, _, metrics = _verl_side(section, 3, has_reference=has_ref)
    _, _, loss_l, _ = _local_side(section, 3, has_reference=has_ref)
    plain = compute_advantage(B.dataproto(), adv_estimator="grpo", num_repeat=3, norm_adv_by_std_in_grpo=True)
    torch.testing.assert_close(data.batch["advantages"][3:], plain.batch["advantages"][3:])
    assert not torch.allclose(data.batch["advantages"][:3], plain.batch["advantages"][:3])
    torch.testing.assert_close(loss_v.detach(), loss_l.detach(), atol=1e-6, rtol=1e-5)
    assert metrics["sgcd/frac_groups_without_reference"] == pytest.approx(0.5)


def test_weights_never_flip_advantage_sign() -> None:
    data, *_ = _verl_side(SGCDSection(beta=3.0), 4)
    plain = compute_advantage(B.dataproto(), adv_estimator="grpo", num_repeat=3, norm_adv_by_std_in_grpo=True)
    a, p = data.batch["advantages"], plain.batch["advantages"]
    assert bool((torch.sign(a) == torch.sign(p)).all())


def test_divergence_shape_mismatch_is_a_clear_error() -> None:
    data = B.dataproto(old_log_probs=B.log_probs(0), advantages=torch.zeros(6, B.T))
    with pytest.raises(ValueError, match="divergence has shape"):
        apply_credit_weights(data, torch.zeros(6, B.T + 1), SGCDSection())
