"""The top-k partition divergences (algorithms.topk) against their full-vocabulary definitions."""

import pytest
import torch

from algorithms.divergence import reverse_kl_and_entropy_from_logits
from algorithms.errors import ShapeError
from algorithms.sdpo import generalized_jsd_topk
from algorithms.topk import generalized_jsd_bins, kl_bins, reverse_kl_shared_topk, shared_topk_bins, tail_bin


def _pair(n: int = 6, v: int = 50, scale: float = 3.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    zs = torch.randn(n, v, generator=g) * scale
    zt = zs + torch.randn(n, v, generator=g) * scale / 2
    return torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)


def _topk(logp: torch.Tensor, k: int):
    values, ids = logp.topk(k, dim=-1)
    return ids, values


def test_tail_bin_completes_the_distribution():
    logp, _ = _pair()
    binned = tail_bin(logp.topk(5, dim=-1).values)
    assert binned.shape == (6, 6)
    assert torch.allclose(binned.exp().sum(-1), torch.ones(6), atol=1e-6)


def test_full_lists_give_the_exact_reverse_kl():
    ls, lt = _pair()
    exact, _ = reverse_kl_and_entropy_from_logits(ls, lt)
    got = reverse_kl_shared_topk(*_topk(ls, 50), *_topk(lt, 50))
    assert torch.allclose(got, exact, atol=1e-5)


def test_coarse_partitions_bound_the_kl_from_below_and_refine_with_k():
    ls, lt = _pair(n=20, seed=1)
    exact, _ = reverse_kl_and_entropy_from_logits(ls, lt)
    previous = torch.zeros(20)
    for k in (1, 3, 10, 30):
        got = reverse_kl_shared_topk(*_topk(ls, k), *_topk(lt, k))
        assert bool((got <= exact + 1e-5).all())
        assert bool((got >= previous - 1e-5).all())  # lists nest as k grows: the partition refines
        previous = got


def test_tokens_outside_the_teachers_list_go_to_the_tail():
    s_ids, s_logp = torch.tensor([[3, 7, 1]]), torch.log(torch.tensor([[0.5, 0.3, 0.1]]))
    t_ids, t_logp = torch.tensor([[7, 3, 9]]), torch.log(torch.tensor([[0.6, 0.2, 0.1]]))
    shared, s, t = shared_topk_bins(s_ids, s_logp, t_ids, t_logp)
    assert shared.tolist() == [[True, True, False]]
    assert torch.allclose(s.exp(), torch.tensor([[0.5, 0.3, 0.0, 0.2]]), atol=1e-6)
    assert torch.allclose(t.exp(), torch.tensor([[0.2, 0.6, 0.0, 0.2]]), atol=1e-6)
    expected = 0.5 * torch.log(torch.tensor(0.5 / 0.2)) + 0.3 * torch.log(torch.tensor(0.3 / 0.6))
    assert torch.allclose(kl_bins(s, t), expected.reshape(1), atol=1e-6)


def test_generalized_jsd_bins_is_sdpos_divergence():
    ls, lt = _pair(seed=2)
    for alpha in (0.0, 0.5, 1.0):
        full = generalized_jsd_topk(ls, lt, alpha=alpha, topk=None)
        assert torch.allclose(generalized_jsd_bins(ls, lt, alpha=alpha), full, atol=1e-6)


def test_mismatched_lists_are_refused():
    ids, logp = torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)
    with pytest.raises(ShapeError, match="same positions"):
        shared_topk_bins(ids, logp, ids[:1], logp[:1])
    with pytest.raises(ShapeError, match="pair up"):
        shared_topk_bins(ids, logp[:, :2], ids, logp)
