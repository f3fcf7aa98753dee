"""SGCD credit weights and the SGCD loss."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from algorithms.errors import NonFiniteError, ShapeError
from algorithms.grpo import grpo_kl_loss
from algorithms.sgcd import credit_scores, credit_weights, sgcd_loss, weighted_advantages

W_MIN, W_MAX = 0.5, 2.0


def _masked_mean(w, m):
    return (w * m).sum(-1) / m.sum(-1).clamp_min(1)


def test_credit_scores():
    kl, h = torch.tensor([[0.1, 0.4]]), torch.tensor([[2.0, 1.0]])
    assert torch.allclose(credit_scores(kl, h, gamma=0.5), torch.tensor([[1.1, 0.9]]))
    assert torch.equal(credit_scores(kl, h), kl)
    with pytest.raises(ShapeError, match="gamma"):
        credit_scores(kl, h, gamma=-1.0)


def test_weights_hand_computed_without_clipping():
    # μ = 1, z = s, β = 0.5: w = 1 + 0.5 (s − 1) = [0.75, 1.0, 1.25]; mean already 1 → no rescale
    s = torch.tensor([[0.5, 1.0, 1.5]])
    w, met = credit_weights(s, torch.ones(1, 3), beta=0.5)
    assert torch.allclose(w, torch.tensor([[0.75, 1.0, 1.25]]))
    assert met["sgcd/rows_rescaled"] == 0


def test_weights_hand_computed_with_clipping_and_rescale():
    # s = [0, 0, 0, 4]: μ = 1, u = clip([0, 0, 0, 4]) = [0.5, 0.5, 0.5, 2] (mean 0.875);
    # c·0.5 for the three small tokens (the big one stays at 2): 3·0.5c + 2 = 4 → c = 4/3
    s = torch.tensor([[0.0, 0.0, 0.0, 4.0]])
    w, _ = credit_weights(s, torch.ones(1, 4))
    assert torch.allclose(w, torch.tensor([[2 / 3, 2 / 3, 2 / 3, 2.0]]), atol=1e-6)


def test_uniform_zero_and_empty_rows_give_ones_and_offmask_is_one():
    s = torch.tensor([[0.3, 0.3, 0.3, 9.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    m = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    w, met = credit_weights(s, m)
    assert torch.equal(w, torch.ones(3, 4))
    assert met["sgcd/rows_uniform"] == 2
    w0, _ = credit_weights(torch.rand(2, 5), torch.ones(2, 5), beta=0.0)
    assert torch.equal(w0, torch.ones(2, 5))


rows = st.integers(1, 4).flatmap(
    lambda b: st.integers(1, 12).flatmap(
        lambda t: st.tuples(
            st.lists(st.lists(st.floats(0, 50), min_size=t, max_size=t), min_size=b, max_size=b),
            st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b),
        )
    )
)


@given(rows, st.floats(0, 4), st.sampled_from([(0.5, 2.0), (0.8, 1.2), (1.0, 3.0), (0.2, 1.0), (1.0, 1.0)]))
def test_weight_properties(data, beta, bounds):
    s, m = torch.tensor(data[0]), torch.tensor(data[1]).float()
    w_min, w_max = bounds
    s.requires_grad_()
    w, met = credit_weights(s, m, beta=beta, w_min=w_min, w_max=w_max)
    assert not w.requires_grad  # detached
    assert torch.isfinite(w).all()
    on = m > 0
    assert (w[on] >= w_min - 1e-6).all() and (w[on] <= w_max + 1e-6).all()  # bounded
    assert (w > 0).all()  # never flips the sign of A
    assert torch.equal(w[~on], torch.ones_like(w[~on]))
    has = m.sum(-1) > 0
    assert torch.allclose(_masked_mean(w, m)[has], torch.ones(int(has.sum())), atol=1e-5)  # mean 1
    for i in range(s.shape[0]):  # monotone (non-decreasing) in the score within a trajectory
        idx = on[i].nonzero().flatten()
        order = idx[torch.argsort(s.detach()[i, idx], stable=True)]
        ws, ss = w[i, order], s.detach()[i, order]
        for a in range(len(order) - 1):
            if ss[a + 1] > ss[a]:
                assert ws[a + 1] >= ws[a] - 1e-6
    sign = torch.randn(s.shape[0])
    assert (torch.sign(weighted_advantages(sign, w)) == torch.sign(sign)[:, None]).all()


def test_more_divergence_more_weight_strictly_when_unclipped():
    w, _ = credit_weights(torch.tensor([[0.8, 1.0, 1.2]]), torch.ones(1, 3))
    assert w[0, 0] < w[0, 1] < w[0, 2]


def _loss_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    b, t = 4, 6
    old = torch.randn(b, t, generator=g) * 0.3 - 1
    logp = (old + 0.2 * torch.randn(b, t, generator=g)).requires_grad_()
    ref = old + 0.1 * torch.randn(b, t, generator=g)
    adv = torch.tensor([1.2, -0.7, 0.3, -1.5])
    mask = (torch.rand(b, t, generator=g) > 0.2).float()
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_sgcd_gradient_equals_grpo_kl_with_scaled_advantages(mode):
    logp, old, ref, adv, mask = _loss_inputs()
    kw = dict(eps_lo=0.2, eps_hi=0.28, beta_kl=0.05, loss_agg_mode=mode)
    scores = torch.rand(4, 6, generator=torch.Generator().manual_seed(3)).requires_grad_()
    w, _ = credit_weights(scores, mask)
    loss, _ = sgcd_loss(logp, old, ref, adv, w, mask, **kw)
    (g_sgcd,) = torch.autograd.grad(loss, logp)
    assert scores.grad is None  # weights carry no gradient
    # reference: the GRPO+KL loss with per-token advantages w·A given as a plain tensor
    logp2 = logp.detach().clone().requires_grad_()
    ref_loss, _ = grpo_kl_loss(logp2, old, ref, adv[:, None] * w, mask, **kw)
    (g_ref,) = torch.autograd.grad(ref_loss, logp2)
    assert torch.allclose(g_sgcd, g_ref, atol=1e-7)
    # and it differs from unweighted GRPO+KL (the weights actually act)
    logp3 = logp.detach().clone().requires_grad_()
    (g_grpo,) = torch.autograd.grad(grpo_kl_loss(logp3, old, ref, adv, mask, **kw)[0], logp3)
    assert not torch.allclose(g_sgcd, g_grpo)


def test_sgcd_with_uniform_divergence_is_exactly_grpo_kl():
    logp, old, ref, adv, mask = _loss_inputs(1)
    kw = dict(eps_lo=0.2, eps_hi=0.28, beta_kl=0.05)
    w, _ = credit_weights(torch.full((4, 6), 0.37), mask)
    a, _ = sgcd_loss(logp, old, ref, adv, w, mask, **kw)
    (ga,) = torch.autograd.grad(a, logp)
    b, _ = grpo_kl_loss(logp, old, ref, adv, mask, **kw)
    (gb,) = torch.autograd.grad(b, logp)
    assert torch.equal(a, b) and torch.equal(ga, gb)


def test_errors():
    with pytest.raises(NonFiniteError, match="scores"):
        credit_weights(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2))
    with pytest.raises(ShapeError, match="w_min"):
        credit_weights(torch.ones(1, 2), torch.ones(1, 2), w_min=1.5, w_max=2.0)
    with pytest.raises(ShapeError, match=">= 0"):
        credit_weights(torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2))
    with pytest.raises(ShapeError, match="sign"):
        weighted_advantages(torch.ones(1), torch.zeros(1, 2))
