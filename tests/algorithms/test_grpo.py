"""GRPO+KL: hand-computed cases and properties."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from algorithms.errors import NonFiniteError, ShapeError
from algorithms.grpo import (
    aggregate_loss,
    entropy_from_logits,
    grpo_kl_loss,
    group_advantages,
    kl_k3,
    ppo_clip_loss,
)


def test_group_advantages_hand_computed():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.5])
    g = torch.tensor([7, 7, 7, 3, 3, 9])
    adv, met = group_advantages(r, g, eps=0.0)
    # group 7: mean 1/3, unbiased std sqrt(((2/3)^2 + 2(1/3)^2)/2) = sqrt(1/3)
    s = math.sqrt(1 / 3)
    expect = [(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s, 0.0, 0.0, 0.0]
    assert torch.allclose(adv, torch.tensor(expect), atol=1e-6)
    assert met["grpo/num_groups"] == 3 and met["grpo/num_singleton_groups"] == 1
    adv2, _ = group_advantages(r, g, norm_by_std=False)
    assert torch.allclose(adv2, torch.tensor([2 / 3, -1 / 3, -1 / 3, 0, 0, 0]), atol=1e-6)


def test_group_advantages_string_ids_match_int_ids():
    r = torch.tensor([1.0, 0.0, 0.3, 0.9])
    a1, _ = group_advantages(r, ["u1", "u2", "u1", "u2"])
    a2, _ = group_advantages(r, torch.tensor([0, 1, 0, 1]))
    assert torch.equal(a1, a2)


def _loop_reference(r, g, norm):
    out = torch.zeros_like(r, dtype=torch.float64)
    for gid in set(g.tolist()):
        idx = [i for i in range(len(g)) if g[i] == gid]
        x = r[idx].double()
        if len(idx) < 2:
            continue
        d = x - x.mean()
        out[idx] = d / (x.std() + 1e-6) if norm else d
    return out.float()


@given(
    st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1)), min_size=1, max_size=24),
    st.booleans(),
)
def test_group_advantages_zero_mean_and_matches_loop(pairs, norm):
    g = torch.tensor([p[0] for p in pairs])
    r = torch.tensor([p[1] for p in pairs])
    adv, _ = group_advantages(r, g, norm_by_std=norm)
    assert torch.isfinite(adv).all()
    for gid in set(g.tolist()):
        assert abs(float(adv[g == gid].double().sum())) < 1e-4
    assert torch.allclose(adv, _loop_reference(r, g, norm), atol=1e-4)


@given(st.lists(st.floats(-30, 30), min_size=1, max_size=20), st.lists(st.floats(-30, 30), min_size=1, max_size=20))
def test_k3_nonnegative_and_zero_on_equal(a, b):
    n = min(len(a), len(b))
    lp, rp = torch.tensor(a[:n]), torch.tensor(b[:n])
    assert (kl_k3(lp, rp) >= 0).all()
    assert torch.equal(kl_k3(lp, lp), torch.zeros(n))


def test_k3_value():
    lp, rp = torch.tensor([-1.0]), torch.tensor([-2.0])
    d = -1.0
    assert torch.allclose(kl_k3(lp, rp), torch.tensor([math.exp(d) - d - 1]), atol=1e-7)


def test_ppo_clip_both_sides_hand_computed():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]])).requires_grad_()
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    loss, met = ppo_clip_loss(logp, old, adv, mask, eps_lo=0.2, eps_hi=0.3)
    # token0: A>0, ρ=1.5 > 1.3 → clipped: −1.3 (no grad); token1: A<0, ρ=1.5: max(1.5, 1.3)=1.5
    # token2: A>0, ρ=0.5: max(−0.5, −0.8) = −0.5; token3: A<0, ρ=0.5 < 0.8 → clipped: 0.8 (no grad)
    assert loss.item() == pytest.approx((-1.3 + 1.5 - 0.5 + 0.8) / 4, abs=1e-6)
    assert met["actor/pg_clipfrac_high"] == pytest.approx(0.25)
    assert met["actor/pg_clipfrac_low"] == pytest.approx(0.25)
    loss.backward()
    g = logp.grad[0]
    assert g[0] == 0 and g[3] == 0  # clipped tokens carry no gradient
    assert g[1] == pytest.approx(1.5 / 4) and g[2] == pytest.approx(-0.5 / 4)


def test_ppo_adv_1d_equals_broadcast_2d():
    torch.manual_seed(0)
    logp, old = torch.randn(3, 5) * 0.1, torch.randn(3, 5) * 0.1
    adv, mask = torch.randn(3), (torch.rand(3, 5) > 0.3).float()
    a, _ = ppo_clip_loss(logp, old, adv, mask, eps_lo=0.2, eps_hi=0.28)
    b, _ = ppo_clip_loss(logp, old, adv[:, None].expand(3, 5), mask, eps_lo=0.2, eps_hi=0.28)
    assert torch.equal(a, b)


def test_aggregate_modes_hand_computed():
    lm = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate_loss(lm, m, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(lm, m, "token-sum").item() == pytest.approx(10)
    assert aggregate_loss(lm, m, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate_loss(lm, m, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate_loss(lm, m, "seq-mean-token-sum-norm").item() == pytest.approx((6 + 4) / 2 / 3)  # as verl
    # a sequence without tokens does not count in the sequence means (as verl's agg_loss)
    lm3, m3 = torch.cat([lm, torch.ones(1, 3)]), torch.cat([m, torch.zeros(1, 3)])
    assert aggregate_loss(lm3, m3, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate_loss(lm3, m3, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    # global normalisers (data parallel): token-mean over 8 global tokens on 2 ranks
    assert aggregate_loss(lm, m, "token-mean", batch_num_tokens=8, dp_size=2).item() == pytest.approx(10 / 8 * 2)
    assert aggregate_loss(lm, torch.zeros_like(m), "token-mean").item() == 0.0
    with pytest.raises(ShapeError, match="Did you mean 'token-mean'"):
        aggregate_loss(lm, m, "token_mean")


def test_grpo_kl_loss_adds_k3():
    torch.manual_seed(1)
    logp, old, ref = (torch.randn(2, 4) * 0.2 for _ in range(3))
    adv, mask = torch.tensor([1.0, -0.5]), torch.ones(2, 4)
    pg, _ = ppo_clip_loss(logp, old, adv, mask, eps_lo=0.2, eps_hi=0.2)
    tot, met = grpo_kl_loss(logp, old, ref, adv, mask, eps_lo=0.2, eps_hi=0.2, beta_kl=0.1)
    assert tot.item() == pytest.approx(pg.item() + 0.1 * kl_k3(logp, ref).mean().item(), abs=1e-6)
    assert met["actor/kl_loss"] > 0


def test_entropy_from_logits():
    assert entropy_from_logits(torch.zeros(2, 4)).allclose(torch.full((2,), math.log(4)))
    p = torch.tensor([0.7, 0.2, 0.1])
    assert entropy_from_logits(p.log()).item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_inputs_raise(bad):
    x = torch.zeros(2, 3)
    y = x.clone()
    y[0, 1] = bad
    with pytest.raises(NonFiniteError, match="logp"):
        ppo_clip_loss(y, x, torch.zeros(2), torch.ones(2, 3), eps_lo=0.2, eps_hi=0.2)
    with pytest.raises(NonFiniteError, match="ref_logp"):
        kl_k3(x, y)
    with pytest.raises(NonFiniteError, match="rewards"):
        group_advantages(torch.tensor([0.0, bad]), torch.tensor([0, 0]))
