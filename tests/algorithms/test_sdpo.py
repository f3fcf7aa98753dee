"""SDPO: generalised JSD, loss, EMA (its teacher prompts: tests/algorithms/test_teacher_context.py)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from algorithms.errors import NonFiniteError, ShapeError
from algorithms.sdpo import (
    DISTILLED_TOKEN_MEANS,
    ema_update_,
    generalized_jsd_topk,
    sdpo_loss,
    sdpo_loss_sampled_token,
)


def _kl(p, q):
    return (p * (p.log() - q.log())).sum(-1)


def _pair(seed=0, n=5, v=11):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * 2, torch.randn(n, v, generator=g) * 2


@pytest.mark.parametrize("topk", [None, 11, 50])
def test_alpha_cases_match_full_vocab_formulas(topk):
    zs, zt = _pair()
    p, q = zs.softmax(-1), zt.softmax(-1)
    fwd = generalized_jsd_topk(zs, zt, alpha=0.0, topk=topk)
    rev = generalized_jsd_topk(zs, zt, alpha=1.0, topk=topk)
    jsd = generalized_jsd_topk(zs, zt, alpha=0.5, topk=topk)
    m = 0.5 * (p + q)
    assert torch.allclose(fwd, _kl(q, p), atol=1e-5)
    assert torch.allclose(rev, _kl(p, q), atol=1e-5)
    assert torch.allclose(jsd, 0.5 * _kl(p, m) + 0.5 * _kl(q, m), atol=1e-5)
    assert (jsd <= math.log(2) + 1e-6).all()
    a = 0.3
    m3 = (1 - a) * p + a * q
    g3 = generalized_jsd_topk(zs, zt, alpha=a, topk=topk)
    assert torch.allclose(g3, (1 - a) * _kl(p, m3) + a * _kl(q, m3), atol=1e-5)


def test_topk_tail_and_renormalised_hand_computed():
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    q = torch.tensor([[0.25, 0.25, 0.25, 0.25]])
    # top-2 of the student: ids 0, 1; tail buckets 0.2 and 0.5
    ps, qs = torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([[0.25, 0.25, 0.5]])
    got = generalized_jsd_topk(p.log(), q.log(), alpha=1.0, topk=2, add_tail=True)
    assert torch.allclose(got, _kl(ps, qs), atol=1e-6)
    got = generalized_jsd_topk(p.log(), q.log(), alpha=1.0, topk=2, add_tail=False)
    assert torch.allclose(got, _kl(torch.tensor([[0.625, 0.375]]), torch.tensor([[0.5, 0.5]])), atol=1e-6)


@given(st.integers(0, 1000), st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.integers(1, 12), st.booleans())
def test_gjsd_nonnegative_and_zero_on_equal(seed, alpha, topk, tail):
    zs, zt = _pair(seed)
    assert (generalized_jsd_topk(zs, zt, alpha=alpha, topk=topk, add_tail=tail) >= -1e-6).all()
    assert torch.allclose(generalized_jsd_topk(zs, zs, alpha=alpha, topk=topk, add_tail=tail), torch.zeros(5), atol=1e-5)


def _sdpo_batch(seed=0, b=3, t=4, v=9):
    g = torch.Generator().manual_seed(seed)
    zs = torch.randn(b, t, v, generator=g).requires_grad_()
    zt = torch.randn(b, t, v, generator=g).requires_grad_()
    ids = torch.randint(0, v, (b, t), generator=g)
    logp = zs.log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)
    old = logp.detach() + 0.8 * torch.randn(b, t, generator=g)
    return zs, zt, logp, old


def test_sdpo_loss_value_mask_and_grad_only_through_student():
    zs, zt, logp, old = _sdpo_batch()
    mask = torch.ones(3, 4)
    mask[0, 3] = 0
    smask = torch.tensor([1.0, 0.0, 1.0])
    loss, met = sdpo_loss(zs, zt, logp, old, mask, smask, alpha=0.5, topk=None, is_clip=2.0)
    per = generalized_jsd_topk(zs, zt, alpha=0.5, topk=None).detach()
    ratio = torch.exp(logp.detach() - old).clamp(max=2.0)
    lm = mask * smask[:, None]
    assert loss.item() == pytest.approx(float((per * ratio * lm).sum() / lm.sum()), rel=1e-5)
    assert met["sdpo/frac_samples_distilled"] == pytest.approx(2 / 3)
    loss.backward()
    assert zt.grad is None  # teacher detached
    assert zs.grad[1].abs().sum() == 0 and zs.grad[0, 3].abs().sum() == 0  # masked out
    assert zs.grad[0, 0].abs().sum() > 0


def test_sdpo_sampled_token_gradient_is_score_function():
    zs, zt, logp, old = _sdpo_batch(1)
    tlogp = logp.detach() - 0.5
    lp = logp.detach().clone().requires_grad_()
    loss, _ = sdpo_loss_sampled_token(lp, tlogp, old, torch.ones(3, 4), torch.ones(3), is_clip=None)
    (g,) = torch.autograd.grad(loss, lp)
    assert torch.allclose(g, (lp.detach() - tlogp) / 12)
    loss2, _ = sdpo_loss_sampled_token(lp, tlogp, old, torch.ones(3, 4), torch.ones(3), is_clip=2.0)
    (g2,) = torch.autograd.grad(loss2, lp)
    ratio = torch.exp(lp.detach() - old).clamp(max=2.0)
    assert torch.allclose(g2, (lp.detach() - tlogp) * ratio / 12, atol=1e-6)


def test_ema_update():
    t = [torch.zeros(2, 2), torch.ones(3)]
    s = [torch.ones(2, 2), torch.full((3,), 3.0)]
    ema_update_(t, s, rate=0.05)
    assert torch.allclose(t[0], torch.full((2, 2), 0.05)) and torch.allclose(t[1], torch.full((3,), 1.1))
    ema_update_(t, s, rate=1.0)
    assert torch.equal(t[0], s[0])
    mt, ms = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.detach().clone() for p in mt.parameters()]
    ema_update_(mt, ms, rate=0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, mt.parameters()))
    with pytest.raises(ShapeError, match="rate"):
        ema_update_(t, s, rate=1.5)
    with pytest.raises(ShapeError, match="shape"):
        ema_update_([torch.zeros(2)], [torch.zeros(3)])


def test_errors():
    zs, zt = _pair()
    with pytest.raises(ShapeError, match="alpha"):
        generalized_jsd_topk(zs, zt, alpha=1.5)
    bad = zt.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="teacher_logits"):
        generalized_jsd_topk(zs, bad)
    with pytest.raises(ShapeError, match="topk"):
        generalized_jsd_topk(zs, zt, topk=0)


def test_token_mean_metrics_are_absent_without_distilled_tokens():
    """A mean over zero distilled tokens is undefined: no is_ratio_mean etc. (never a 0 that a
    mean over micro-batches would average in); the counts are still reported."""
    zs, zt, logp, old = _sdpo_batch(2)
    _, met = sdpo_loss(zs, zt, logp, old, torch.ones(3, 4), torch.zeros(3), alpha=0.5, topk=None, is_clip=2.0)
    assert not set(DISTILLED_TOKEN_MEANS) & set(met)
    assert met["sdpo/num_tokens"] == 0.0 and met["sdpo/frac_samples_distilled"] == 0.0
    _, met = sdpo_loss_sampled_token(logp, logp.detach() - 0.5, old, torch.ones(3, 4), torch.tensor([0.0, 1.0, 0.0]))
    assert set(DISTILLED_TOKEN_MEANS) <= set(met) and met["sdpo/num_tokens"] == 4.0
    ratio = torch.exp(logp.detach() - old).clamp(max=2.0)
    assert met["sdpo/is_ratio_mean"] == pytest.approx(float(ratio[1].mean()), rel=1e-6)
