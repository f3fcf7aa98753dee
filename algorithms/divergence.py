"""Per-token reverse KL(student‖teacher) and student entropy from hidden states and the LM head.

SPEC §3.5d and §5. With student logits z^S = h^S Wᵀ and teacher logits z^T = h^T Wᵀ (W the
shared LM head, V × H), p_S = softmax(z^S), p_T = softmax(z^T):

    D_t = KL(p_S ‖ p_T) = Σ_v p_S,v (log p_S,v − log p_T,v)
        = Σ_v p_S,v (z^S_v − z^T_v) − lse(z^S) + lse(z^T)
    H_t = −Σ_v p_S,v log p_S,v = lse(z^S) − Σ_v p_S,v z^S_v

These are credit *features*: computed under ``torch.no_grad`` and returned detached.

Implementations, chosen by :func:`reverse_kl_and_entropy` (the dispatch hook):

- ``"chunked"`` (default, any device): rows in chunks of ``chunk_size`` tokens and, optionally,
  the vocabulary in slices of ``vocab_chunk_size`` with a streaming log-sum-exp merge, so the
  largest live tensors are a few [chunk × vocab_chunk] float32 blocks; no [N × V] tensor exists.
- ``"naive"``: the full-logit reference (:func:`reverse_kl_and_entropy_naive`).
- a fused GPU kernel (issue #7) can be added with :func:`register_divergence_backend` under the
  name ``"fused"``; ``backend="auto"`` then uses it for CUDA tensors and falls back to
  ``"chunked"`` otherwise.

Precision: the logit matmul runs in the input dtype (for bf16 on GPU, cuBLAS accumulates in
float32 and rounds the output to bf16, exactly like the model's own LM head); everything after it
— log-sum-exp, the sums over the vocabulary, the running accumulators — is float32.
Source: the quantities follow the SGCD digest ("dense reverse KL and entropy credit features");
the chunked / online-softmax computation is ours (online log-sum-exp as in Milakov & Gimelshein
2018, "Online normalizer calculation for softmax").
"""

from __future__ import annotations

from typing import Callable

import torch

from algorithms import _checks
from algorithms.errors import AlgorithmError, ShapeError
from sgcd_common import unknown_choice

__all__ = [
    "DivergenceBackend",
    "reverse_kl_and_entropy",
    "reverse_kl_and_entropy_naive",
    "reverse_kl_and_entropy_chunked",
    "reverse_kl_and_entropy_from_logits",
    "register_divergence_backend",
    "divergence_backends",
]

DivergenceBackend = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""``fn(student_hidden (N,H), teacher_hidden (N,H), lm_head_weight (V,H), *, chunk_size,
vocab_chunk_size) -> (kl (N,), entropy (N,))`` float32, no grad."""


def _flatten(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, w: torch.Tensor):
    """Validate shapes/finiteness; return (hs (N,H), ht (N,H), lead shape)."""
    if student_hidden.shape != teacher_hidden.shape:
        raise ShapeError(
            f"student_hidden {tuple(student_hidden.shape)} and teacher_hidden "
            f"{tuple(teacher_hidden.shape)} must have the same shape (..., H)"
        )
    _checks.ndim("lm_head_weight", w, 2)
    if student_hidden.ndim < 1 or student_hidden.shape[-1] != w.shape[1]:
        raise ShapeError(
            f"hidden size mismatch: hidden states (..., {student_hidden.shape[-1] if student_hidden.ndim else '?'}) "
            f"vs lm_head_weight (V, H) = {tuple(w.shape)}"
        )
    if student_hidden.dtype != w.dtype or teacher_hidden.dtype != w.dtype:
        raise ShapeError(
            f"dtype mismatch: student {student_hidden.dtype}, teacher {teacher_hidden.dtype}, "
            f"lm_head_weight {w.dtype}; cast them to one dtype"
        )
    _checks.finite("student_hidden", student_hidden)
    _checks.finite("teacher_hidden", teacher_hidden)
    lead = student_hidden.shape[:-1]
    hdim = student_hidden.shape[-1]
    return student_hidden.reshape(-1, hdim), teacher_hidden.reshape(-1, hdim), lead


def _check_out(kl: torch.Tensor, ent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # The LM head is not scanned up front (V×H is large); a non-finite weight shows up here.
    if not (bool(torch.isfinite(kl).all()) and bool(torch.isfinite(ent).all())):
        raise AlgorithmError(
            "divergence produced non-finite values although the hidden states are finite; "
            "lm_head_weight probably contains NaN/inf (or logits overflow the input dtype)"
        )
    # KL ≥ 0 and H ≥ 0 hold exactly; clamp float rounding (|err| ~ 1e-7) at 0.
    return kl.clamp_min_(0.0), ent.clamp_min_(0.0)


def _kl_ent_block(zs: torch.Tensor, zt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p_S‖p_T) and H(p_S) for full-vocabulary float32 logit rows (c, V); overwrites zs, zt."""
    lse_s = torch.logsumexp(zs, dim=-1, keepdim=True)
    lse_t = torch.logsumexp(zt, dim=-1, keepdim=True)
    zs.sub_(lse_s)  # log p_S
    zt.sub_(lse_t).neg_().add_(zs)  # log p_S − log p_T
    p = zs.exp()
    # In-place products then sum (pairwise summation, accurate in float32; a bmm/einsum row dot
    # accumulates sequentially and lost ~1e-5 at V = 5k). No extra [c × V] temporary.
    kl = zt.mul_(p).sum(-1)
    ent = zs.mul_(p).sum(-1).neg_()
    return kl, ent


@torch.no_grad()
def reverse_kl_and_entropy_naive(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    **_: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: full [N × V] logits, ``log_softmax``, then the sums (materialises everything).

    ``D = Σ_v p_S (log p_S − log p_T)``, ``H = −Σ_v p_S log p_S``; shapes (..., H), (..., H),
    (V, H) → (...), (...) float32, detached. Memory ≈ 6 × N × V × 4 bytes. Source: definition.
    """
    hs, ht, lead = _flatten(student_hidden, teacher_hidden, lm_head_weight)
    ls = torch.log_softmax((hs @ lm_head_weight.T).float(), dim=-1)
    lt = torch.log_softmax((ht @ lm_head_weight.T).float(), dim=-1)
    p = ls.exp()
    kl = (p * (ls - lt)).sum(-1)
    ent = -(p * ls).sum(-1)
    kl, ent = _check_out(kl, ent)
    return kl.reshape(lead), ent.reshape(lead)


def _online_rows(hs: torch.Tensor, ht: torch.Tensor, w: torch.Tensor, vchunk: int):
    """Streaming pass over vocabulary slices of W for one row block; returns (kl, ent) (c,).

    Per slice k (z restricted to the slice, m_k = its max of z^S) keep only per-row scalars:
    S_k = Σ e^{z^S−m_k}, A_k = Σ e^{z^S−m_k}(z^S−m_k), D_k = Σ e^{z^S−m_k}(z^S−z^T), L_k = lse(z^T).
    Merge (M = max_k m_k, c_k = e^{m_k−M}): S = Σ c_k S_k, A = Σ c_k (A_k + S_k (m_k−M)),
    D = Σ c_k D_k, lse(z^T) = lse_k L_k. Then lse(z^S) = M + log S, H = log S − A/S and
    KL = D/S − lse(z^S) + lse(z^T). The merge sums over slices pairwise (one tensor op), which
    keeps float32 error flat in the number of slices, unlike a running rescale.
    """
    parts: list[torch.Tensor] = []
    c = hs.shape[0]
    h2 = torch.cat([hs, ht])  # one GEMM per slice for student and teacher rows: W is read once
    for v0 in range(0, w.shape[0], vchunk):
        z = (h2 @ w[v0 : v0 + vchunk].T).float()
        zs, zt = z[:c], z[c:]
        lse_t = torch.logsumexp(zt, dim=-1)
        zt.neg_().add_(zs)  # z^S − z^T
        m = zs.amax(dim=-1)
        zs.sub_(m.unsqueeze(-1))  # z^S − m_k
        e = zs.exp()
        parts.append(torch.stack((m, e.sum(-1), zs.mul_(e).sum(-1), zt.mul_(e).sum(-1), lse_t)))
        del z, zs, zt, e
    m_k, s_k, a_k, d_k, lse_tk = torch.stack(parts, dim=-1)  # each (c, n_slices)
    big_m = m_k.amax(dim=-1, keepdim=True)
    c_k = torch.exp(m_k - big_m)
    s = (c_k * s_k).sum(-1)
    a = (c_k * (a_k + s_k * (m_k - big_m))).sum(-1)
    d = (c_k * d_k).sum(-1)
    log_s = torch.log(s)
    ent = log_s - a / s
    kl = d / s - (big_m.squeeze(-1) + log_s) + torch.logsumexp(lse_tk, dim=-1)
    return kl, ent


@torch.no_grad()
def reverse_kl_and_entropy_chunked(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    *,
    chunk_size: int = 1024,
    vocab_chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked reverse KL and entropy; exact (same equations as the naive reference).

    Rows are processed ``chunk_size`` at a time; student and teacher rows of a chunk share one
    GEMM. With ``vocab_chunk_size=None`` each row block materialises [2·chunk × V] float32 logits
    plus one [chunk × V] block of probabilities; with an integer, the
    vocabulary is streamed in slices of W with an online log-sum-exp (see ``_online_rows``), so
    live memory is O(chunk × vocab_chunk) — on the CPU this is also the fastest setting (large
    GEMMs, W streamed once per row chunk), e.g. chunk 1024 × vocab chunk 8192. Shapes (..., H), (..., H), (V, H) → (...), (...)
    float32, detached (no_grad). Source: ours (online softmax, Milakov & Gimelshein 2018).
    """
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ShapeError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if vocab_chunk_size is not None and (int(vocab_chunk_size) != vocab_chunk_size or vocab_chunk_size < 1):
        raise ShapeError(f"vocab_chunk_size must be a positive integer or None, got {vocab_chunk_size!r}")
    hs, ht, lead = _flatten(student_hidden, teacher_hidden, lm_head_weight)
    n, v = hs.shape[0], lm_head_weight.shape[0]
    kl = torch.empty(n, dtype=torch.float32, device=hs.device)
    ent = torch.empty(n, dtype=torch.float32, device=hs.device)
    for r0 in range(0, n, chunk_size):
        sl = slice(r0, r0 + chunk_size)
        if vocab_chunk_size is None or vocab_chunk_size >= v:
            c = hs[sl].shape[0]
            z = (torch.cat([hs[sl], ht[sl]]) @ lm_head_weight.T).float()  # one GEMM, W read once
            kl[sl], ent[sl] = _kl_ent_block(z[:c], z[c:])
            del z
        else:
            kl[sl], ent[sl] = _online_rows(hs[sl], ht[sl], lm_head_weight, int(vocab_chunk_size))
    kl, ent = _check_out(kl, ent)
    return kl.reshape(lead), ent.reshape(lead)


_BACKENDS: dict[str, DivergenceBackend] = {
    "chunked": reverse_kl_and_entropy_chunked,
    "naive": reverse_kl_and_entropy_naive,
}


def register_divergence_backend(name: str, fn: DivergenceBackend, *, overwrite: bool = False) -> None:
    """Register an implementation (e.g. a fused Triton/CUDA kernel under ``"fused"``, issue #7).

    ``fn`` must follow :data:`DivergenceBackend` and agree with the naive reference to 1e-5 in
    float32 (test it with the same suite). Re-registering a name needs ``overwrite=True``.
    """
    if not callable(fn):
        raise ShapeError(f"backend {name!r} must be callable, got {type(fn).__name__}")
    if name in _BACKENDS and not overwrite and _BACKENDS[name] is not fn:
        raise AlgorithmError(f"divergence backend {name!r} is already registered; pass overwrite=True")
    _BACKENDS[name] = fn


def divergence_backends() -> tuple[str, ...]:
    """Names of the registered implementations."""
    return tuple(_BACKENDS)


def reverse_kl_and_entropy(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    *,
    chunk_size: int = 1024,
    vocab_chunk_size: int | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``D_t = KL(π_θ(·|s_t) ‖ π_T(·|s_t, ref))`` and ``H_t = H(π_θ(·|s_t))``.

    The dispatch hook: ``backend="auto"`` uses a registered ``"fused"`` kernel for CUDA tensors
    when one exists, else ``"chunked"`` (the CPU fallback, also fine on GPU); any registered name
    may be forced. Shapes: student_hidden, teacher_hidden (..., H) — pass only the masked
    (policy-generated) rows to save work, e.g. ``h[mask.bool()]`` — and lm_head_weight (V, H)
    → kl (...), entropy (...), float32, detached (computed under no_grad). See the module
    docstring for the equations. Source: SGCD digest (features); computation ours.
    """
    if backend == "auto":
        if student_hidden.is_cuda and "fused" not in _BACKENDS:
            from algorithms import fused_divergence  # registers itself only where Triton + CUDA work

            fused_divergence.register()
        backend = "fused" if (student_hidden.is_cuda and "fused" in _BACKENDS) else "chunked"
    if backend not in _BACKENDS:
        raise AlgorithmError(unknown_choice("divergence backend", backend, ["auto", *_BACKENDS]))
    return _BACKENDS[backend](
        student_hidden, teacher_hidden, lm_head_weight, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
    )


@torch.no_grad()
def reverse_kl_and_entropy_from_logits(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same features from logits already in memory (small models, tests): (..., V) → (...).

    ``D = Σ_v p_S (log p_S − log p_T)``, ``H = −Σ_v p_S log p_S``; float32, detached; rows in
    chunks of ``chunk_size`` (only float32 copies of one chunk are made). Source: definition.
    """
    _checks.paired_logits(student_logits, teacher_logits)
    lead, v = student_logits.shape[:-1], student_logits.shape[-1]
    zs_all, zt_all = student_logits.reshape(-1, v), teacher_logits.reshape(-1, v)
    n = zs_all.shape[0]
    kl = torch.empty(n, dtype=torch.float32, device=zs_all.device)
    ent = torch.empty_like(kl)
    for r0 in range(0, n, chunk_size):
        sl = slice(r0, r0 + chunk_size)
        kl[sl], ent[sl] = _kl_ent_block(zs_all[sl].float().clone(), zt_all[sl].float().clone())
    kl, ent = _check_out(kl, ent)
    return kl.reshape(lead), ent.reshape(lead)
