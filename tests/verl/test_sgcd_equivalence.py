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
from adapters.verl.credit import apply_credit_weights
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


def _numbers(seed: int):
    mask = B.response_mask()
    old = B.log_probs(seed)
    teacher = (old + 0.4 * torch.randn(old.shape, generator=torch.Generator().manual_seed(seed + 1))) * mask
    teacher = teacher.clamp(max=0.0)
    entropy = (B.log_probs(seed + 2).neg() * 2.0) * mask
    ref = (old + 0.1 * torch.randn(old.shape, generator=torch.Generator().manual_seed(seed + 3))) * mask
    logp = (old + 0.15 * torch.randn(old.shape, generator=torch.Generator().manual_seed(seed + 4))) * mask
    return mask, old, teacher, entropy, ref, logp


def _verl_side(section: SGCDSection, seed: int, has_reference=None):
    mask, old, teacher, entropy, ref, logp = _numbers(seed)
    data = B.dataproto(old_log_probs=old, entropy=entropy)
    algo = BenchAlgoConfig(adv_estimator="grpo", method="sgcd", sgcd=section)
    data = compute_advantage(data, adv_estimator="grpo", num_repeat=3, norm_adv_by_std_in_grpo=True, config=algo)
    metrics = apply_credit_weights(data, teacher, section, has_reference=has_reference)
    micro = B.micro_batch(
        {"response_mask": mask, "old_log_probs": old, "advantages": data.batch["advantages"], "ref_log_prob": ref,
         "credit_weights": data.batch["credit_weights"]}
    )
    student = logp.clone().requires_grad_(True)
    loss, _ = ppo_loss(_actor_config(), {"log_probs": B.packed_model_log_probs(student)}, micro)
    loss.backward()
    return data, loss, student.grad, metrics


def _local_side(section: SGCDSection, seed: int, has_reference=None):
    mask, old, teacher, entropy, ref, logp = _numbers(seed)
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


def test_teacher_shape_mismatch_is_a_clear_error() -> None:
    data = B.dataproto(old_log_probs=B.log_probs(0), advantages=torch.zeros(6, B.T))
    with pytest.raises(ValueError, match="teacher_log_probs has shape"):
        apply_credit_weights(data, torch.zeros(6, B.T + 1), SGCDSection())
