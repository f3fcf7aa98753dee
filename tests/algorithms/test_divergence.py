"""Chunked divergence features against the naive full-vocabulary reference."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from algorithms.divergence import (
    divergence_backends,
    register_divergence_backend,
    reverse_kl_and_entropy,
    reverse_kl_and_entropy_from_logits,
    reverse_kl_and_entropy_naive,
)
from algorithms.errors import AlgorithmError, NonFiniteError, ShapeError


def _inputs(n=37, h=48, v=1009, seed=0, scale=0.7, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(v, h, generator=g) / h**0.5
    hs = torch.randn(n, h, generator=g) * scale * 3
    ht = hs + 0.5 * torch.randn(n, h, generator=g)
    return hs.to(dtype), ht.to(dtype), w.to(dtype)


def _definition_float64(hs, ht, w):
    ls = torch.log_softmax(hs.double() @ w.double().T, -1)
    lt = torch.log_softmax(ht.double() @ w.double().T, -1)
    p = ls.exp()
    return (p * (ls - lt)).sum(-1), -(p * ls).sum(-1)


@pytest.mark.parametrize(
    "chunk,vchunk",
    [(1, None), (5, None), (16, None), (37, None), (1000, None), (8, 100), (7, 128), (64, 1000), (3, 1009), (4, 2000), (5, 1)],
)
def test_chunked_equals_naive(chunk, vchunk):
    hs, ht, w = _inputs()  # V = 1009 is prime: no chunk size divides it
    kl0, h0 = reverse_kl_and_entropy_naive(hs, ht, w)
    kl, h = reverse_kl_and_entropy(hs, ht, w, chunk_size=chunk, vocab_chunk_size=vchunk, backend="chunked")
    assert kl.dtype == torch.float32 and kl.shape == (37,)
    assert torch.allclose(kl, kl0, atol=1e-5, rtol=0)
    assert torch.allclose(h, h0, atol=1e-5, rtol=0)


def test_naive_matches_float64_definition():
    hs, ht, w = _inputs()
    kl, h = reverse_kl_and_entropy_naive(hs, ht, w)
    kl64, h64 = _definition_float64(hs, ht, w)
    assert torch.allclose(kl.double(), kl64, atol=1e-5) and torch.allclose(h.double(), h64, atol=1e-5)
    assert (kl > 0).all() and (h > 0).all()


@given(
    n=st.integers(1, 20), v=st.integers(2, 300), chunk=st.integers(1, 25),
    vchunk=st.one_of(st.none(), st.integers(1, 320)), seed=st.integers(0, 10_000),
)
def test_chunked_equals_naive_property(n, v, chunk, vchunk, seed):
    hs, ht, w = _inputs(n=n, h=16, v=v, seed=seed)
    kl0, h0 = reverse_kl_and_entropy_naive(hs, ht, w)
    kl, h = reverse_kl_and_entropy(hs, ht, w, chunk_size=chunk, vocab_chunk_size=vchunk)
    assert torch.allclose(kl, kl0, atol=1e-5) and torch.allclose(h, h0, atol=1e-5)


def test_equal_inputs_give_zero_kl_and_batched_shapes():
    hs, _, w = _inputs(n=12)
    kl, h = reverse_kl_and_entropy(hs.reshape(3, 4, -1), hs.reshape(3, 4, -1), w, chunk_size=5, vocab_chunk_size=300)
    assert kl.shape == (3, 4) and torch.allclose(kl, torch.zeros(3, 4), atol=1e-6)
    assert torch.allclose(h.reshape(-1), reverse_kl_and_entropy_naive(hs, hs, w)[1], atol=1e-5)


def test_detached_under_grad_inputs():
    hs, ht, w = _inputs(n=4)
    hs.requires_grad_()
    w.requires_grad_()
    kl, h = reverse_kl_and_entropy(hs, ht, w, chunk_size=2)
    assert not kl.requires_grad and not h.requires_grad


def test_bf16_inputs_accumulate_in_float32():
    hs, ht, w = _inputs(n=9, dtype=torch.bfloat16)
    kl0, h0 = reverse_kl_and_entropy_naive(hs, ht, w)
    kl, h = reverse_kl_and_entropy(hs, ht, w, chunk_size=4, vocab_chunk_size=256)
    assert kl.dtype == torch.float32
    assert torch.allclose(kl, kl0, atol=1e-4) and torch.allclose(h, h0, atol=1e-4)


def test_from_logits_matches_naive():
    hs, ht, w = _inputs(n=10)
    kl0, h0 = reverse_kl_and_entropy_naive(hs, ht, w)
    kl, h = reverse_kl_and_entropy_from_logits(hs @ w.T, ht @ w.T, chunk_size=3)
    assert torch.allclose(kl, kl0, atol=1e-5) and torch.allclose(h, h0, atol=1e-5)


def test_errors():
    hs, ht, w = _inputs(n=4)
    bad = hs.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="student_hidden"):
        reverse_kl_and_entropy(bad, ht, w)
    wbad = w.clone()
    wbad[3, 0] = float("inf")
    with pytest.raises(AlgorithmError, match="lm_head_weight"):
        reverse_kl_and_entropy(hs, ht, wbad)
    with pytest.raises(ShapeError, match="hidden size"):
        reverse_kl_and_entropy(hs, ht, w[:, :5])
    with pytest.raises(ShapeError, match="chunk_size"):
        reverse_kl_and_entropy(hs, ht, w, chunk_size=0)
    with pytest.raises(AlgorithmError, match="Did you mean 'chunked'"):
        reverse_kl_and_entropy(hs, ht, w, backend="chunkd")


def test_backend_hook():
    calls = []

    def fake_fused(hs, ht, w, **kw):  # a registered kernel is dispatched to by name
        calls.append(kw)
        return reverse_kl_and_entropy_naive(hs, ht, w)

    register_divergence_backend("test-fused", fake_fused)
    assert "test-fused" in divergence_backends()
    hs, ht, w = _inputs(n=3)
    reverse_kl_and_entropy(hs, ht, w, backend="test-fused", chunk_size=2)
    assert calls == [{"chunk_size": 2, "vocab_chunk_size": None}]
    with pytest.raises(AlgorithmError, match="already registered"):
        register_divergence_backend("test-fused", lambda *a, **k: None)
