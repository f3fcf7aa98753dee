"""Fused Triton kernel: per-token reverse KL(student‖teacher) and student entropy (issue #7).

Computes the same features as :mod:`algorithms.divergence` directly from the two hidden-state
tensors and the LM head, streaming the vocabulary through an online softmax, so no
[tokens × vocab] logit tensor ever exists (live memory: a few float32 numbers per token and
vocabulary split). With z^S = h^S Wᵀ, z^T = h^T Wᵀ (W the shared LM head, V × H):

    KL_t = Σ_v p_S,v (log p_S,v − log p_T,v),     H_t = −Σ_v p_S,v log p_S,v.

**Online form** (derivation; ours, after the online normaliser of Milakov & Gimelshein 2018,
"Online normalizer calculation for softmax", and the split-K merge of flash-decoding). For one
token, keep over the vocabulary entries seen so far, relative to running maxima m (student) and
n (teacher):

    S = Σ e^{z^S−m},   B = Σ e^{z^S−m} (z^S − m),   D = Σ e^{z^S−m} (z^S − z^T),   T = Σ e^{z^T−n}.

Since log p_S = z^S − m − log S and log p_T = z^T − n − log T, with p_S = e^{z^S−m}/S:

    H  = −Σ p_S (z^S − m − log S)              = log S − B/S
    KL =  Σ p_S (z^S − z^T) − (m + log S) + (n + log T) = D/S − (m − n) − log S + log T.

B is kept relative to m (not Σ e^{z^S−m} z^S) so H never subtracts two numbers of the size of
the logits. When a block of logits raises the maximum from m to m' (α = e^{m−m'}):

    S ← α S + Σ_blk e^{z^S−m'}
    B ← α (B + S_old (m − m')) + Σ_blk e^{z^S−m'} (z^S − m')      [(z−m) = (z−m') + (m'−m)]
    D ← α D + Σ_blk e^{z^S−m'} (z^S − z^T)                         [z^S − z^T needs no shift]
    T ← e^{n−n'} T + Σ_blk e^{z^T−n'}.

The running maxima start at −1e30 (finite, so α = 0 and S_old·(m − m') = 0·finite = 0: no NaN),
and out-of-range vocabulary columns are set to −1e30 in both logits (their weight e^{−1e30−m'}
is 0 and z^S − z^T = 0 there). The same merge, with m' the maximum over parts, combines the
per-split partial results (S_k, B_k, D_k, T_k, m_k, n_k):

    M = max_k m_k, c_k = e^{m_k−M}:  S = Σ c_k S_k,  B = Σ c_k (B_k + S_k (m_k − M)),  D = Σ c_k D_k,
    N = max_k n_k:                   T = Σ e^{n_k−N} T_k.

**Kernel layout.** Grid = (row blocks of ``block_n`` tokens) × (vocabulary splits of ``split_v``
entries), splits fastest so that programs running together share the same hidden-state rows in
L2. Each program loops over its split in ``block_v`` columns; per column block it runs a K-loop
over the hidden size with two ``tl.dot`` calls sharing one W tile (student and teacher rows), in
the input dtype with float32 accumulators, then applies the update above in float32. Rows past N
and columns past V are clamped into range for the loads and discarded afterwards (columns: set
to −1e30; rows: not stored). Partial results (6 × n_splits × N float32) are merged with a few
small PyTorch ops. The two logit matmuls (4·N·V·H flops) are the floor for any exact method;
the epilogue adds 2 exponentials and ~15 float32 operations per (token, vocabulary) pair.

**Precision.** bf16/fp16 products are exact in the float32 accumulator, so the logits are the
float32 logits of the given inputs (more exact than the naive path, which rounds logits to the
input dtype). float32 inputs use ``input_precision="ieee"`` (no TF32). Sums over the vocabulary
are float32 (a tree sum inside a block, sequential across blocks and a tree across splits).

**Availability.** ``import algorithms.fused_divergence`` never needs Triton: it is imported on
first use. :func:`register` adds the kernel to :mod:`algorithms.divergence` as the ``"fused"``
backend only when Triton imports and CUDA is available. On the CPU the kernel runs only under
Triton's interpreter (environment variable ``TRITON_INTERPRET=1`` set before the first call),
which the tests use on tiny shapes.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from algorithms.divergence import (
    _check_out,
    _flatten,
    register_divergence_backend,
    reverse_kl_and_entropy_chunked,
)
from algorithms.errors import AlgorithmError, ConfigError, ShapeError

__all__ = [
    "FusedConfig",
    "fused_available",
    "default_config",
    "reverse_kl_and_entropy_fused",
    "register",
]

_NEG = -1.0e30  # finite "minus infinity" for running maxima and masked columns (see module doc)
_SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclass(frozen=True)
class FusedConfig:
    """Tile sizes and launch settings of the fused kernel.

    Attributes:
        block_n: tokens per program (rows of each ``tl.dot``; student and teacher each).
        block_v: vocabulary columns per inner block (columns of each ``tl.dot``).
        block_k: hidden-size slice per K-loop step.
        num_warps: warps per program.
        num_stages: software-pipelining depth of the K-loop (shared memory ≈
            num_stages · (2·block_n + block_v) · block_k · itemsize).
        split_v: vocabulary entries per program (a multiple of ``block_v``); ``None`` picks it
            from the multiprocessor count so the grid fills whole waves (see ``_choose_split_v``).
        flatten: ask Triton to flatten the vocabulary/K loop nest and pipeline across column
            blocks (``tl.range(flatten=True)``; experimental, GPU only).
        warp_specialize: Triton's automatic warp specialisation of the vocabulary loop
            (``tl.range(warp_specialize=True)``; experimental, GPU only).
    """

    block_n: int = 128
    block_v: int = 128
    block_k: int = 64
    num_warps: int = 8
    num_stages: int = 3
    split_v: int | None = None
    flatten: bool = False
    warp_specialize: bool = False

    def __post_init__(self) -> None:
        for name in ("block_n", "block_v", "block_k"):
            val = getattr(self, name)
            if not isinstance(val, int) or val < 16 or val & (val - 1):
                raise ConfigError(f"FusedConfig.{name} must be a power of two ≥ 16, got {val!r}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ConfigError(f"FusedConfig.num_warps must be one of 1, 2, 4, 8, 16, got {self.num_warps!r}")
        if not isinstance(self.num_stages, int) or not 1 <= self.num_stages <= 8:
            raise ConfigError(f"FusedConfig.num_stages must be an integer in [1, 8], got {self.num_stages!r}")
        if self.split_v is not None and (
            not isinstance(self.split_v, int) or self.split_v < self.block_v or self.split_v % self.block_v
        ):
            raise ConfigError(
                f"FusedConfig.split_v must be None or a positive multiple of block_v={self.block_v}, "
                f"got {self.split_v!r}"
            )


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def fused_available() -> tuple[bool, str]:
    """``(True, "")`` if the kernel can run here on CUDA tensors, else ``(False, reason)``."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising something else
        return False, f"triton is not importable ({type(exc).__name__}: {exc})"
    if not torch.cuda.is_available():
        return False, "CUDA is not available (the fused kernel needs a GPU, or TRITON_INTERPRET=1 on CPU tensors)"
    return True, ""


@functools.lru_cache(maxsize=1)
def _kernel() -> Any:
    """Build the Triton kernel on first use (interpreted if TRITON_INTERPRET=1 at that moment)."""
    import triton
    import triton.language as tl

    @triton.jit
    def _kl_ent_partial_kernel(
        hs_ptr, ht_ptr, w_ptr, part_ptr,
        N, V, H, stride_hs, stride_ht, stride_w, split_v, n_splits,
        BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
        INPUT_PRECISION: tl.constexpr, NEG: tl.constexpr, UPCAST: tl.constexpr,
        FLATTEN: tl.constexpr, WARP_SPECIALIZE: tl.constexpr, EVEN_K: tl.constexpr,
    ):
        pid = tl.program_id(0)
        pid_n = pid // n_splits  # splits vary fastest: concurrent programs share hidden rows
        pid_s = pid % n_splits
        rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        # Rows past N and columns past V are clamped into range (modulo) instead of masked, so
        # the K-loop loads need no row/column masks; their results are discarded below.
        rows_in = (rows % N).to(tl.int64)
        ks = tl.arange(0, BLOCK_K)
        cols = tl.arange(0, BLOCK_V)
        hs_first = hs_ptr + rows_in[:, None] * stride_hs + ks[None, :]
        ht_first = ht_ptr + rows_in[:, None] * stride_ht + ks[None, :]
        v_start = pid_s * split_v
        v_end = v_start + split_v  # split_v is a multiple of BLOCK_V: splits never overlap
        if v_end > V:
            v_end = V

        m_s = tl.full([BLOCK_N], NEG, tl.float32)  # running max of z^S
        s_s = tl.zeros([BLOCK_N], tl.float32)  # S = Σ e^{z^S−m}
        b_s = tl.zeros([BLOCK_N], tl.float32)  # B = Σ e^{z^S−m}(z^S−m)
        d_st = tl.zeros([BLOCK_N], tl.float32)  # D = Σ e^{z^S−m}(z^S−z^T)
        m_t = tl.full([BLOCK_N], NEG, tl.float32)  # running max of z^T
        s_t = tl.zeros([BLOCK_N], tl.float32)  # T = Σ e^{z^T−n}

        for v0 in tl.range(v_start, v_end, BLOCK_V, flatten=FLATTEN, warp_specialize=WARP_SPECIALIZE):
            vocab = v0 + cols
            v_ok = vocab < V
            vocab_in = (vocab % V).to(tl.int64)
            a_s_ptrs = hs_first
            a_t_ptrs = ht_first
            w_ptrs = w_ptr + vocab_in[:, None] * stride_w + ks[None, :]  # [BLOCK_V, BLOCK_K], K contiguous
            acc_s = tl.zeros([BLOCK_N, BLOCK_V], tl.float32)
            acc_t = tl.zeros([BLOCK_N, BLOCK_V], tl.float32)
            for k0 in range(0, H, BLOCK_K):
                if EVEN_K:
                    a_s = tl.load(a_s_ptrs)
                    a_t = tl.load(a_t_ptrs)
                    w = tl.load(w_ptrs)
                else:
                    k_ok = (k0 + ks)[None, :] < H
                    a_s = tl.load(a_s_ptrs, mask=k_ok, other=0.0)
                    a_t = tl.load(a_t_ptrs, mask=k_ok, other=0.0)
                    w = tl.load(w_ptrs, mask=k_ok, other=0.0)
                if UPCAST:  # interpreter only: its tl.dot mishandles bf16 (stored as uint16)
                    a_s = a_s.to(tl.float32)
                    a_t = a_t.to(tl.float32)
                    w = w.to(tl.float32)
                wt = tl.trans(w)
                acc_s = tl.dot(a_s, wt, acc_s, input_precision=INPUT_PRECISION)
                acc_t = tl.dot(a_t, wt, acc_t, input_precision=INPUT_PRECISION)
                a_s_ptrs += BLOCK_K
                a_t_ptrs += BLOCK_K
                w_ptrs += BLOCK_K

            z_s = tl.where(v_ok[None, :], acc_s, NEG)
            z_t = tl.where(v_ok[None, :], acc_t, NEG)
            # student: rescale S, B, D to the new maximum, then add this block
            m_new = tl.maximum(m_s, tl.max(z_s, axis=1))
            alpha = tl.exp(m_s - m_new)
            zc = z_s - m_new[:, None]
            p = tl.exp(zc)
            b_s = alpha * (b_s + s_s * (m_s - m_new)) + tl.sum(p * zc, axis=1)
            s_s = alpha * s_s + tl.sum(p, axis=1)
            d_st = alpha * d_st + tl.sum(p * (z_s - z_t), axis=1)
            m_s = m_new
            # teacher: log-sum-exp only
            n_new = tl.maximum(m_t, tl.max(z_t, axis=1))
            s_t = tl.exp(m_t - n_new) * s_t + tl.sum(tl.exp(z_t - n_new[:, None]), axis=1)
            m_t = n_new

        # partials: float32 [6, n_splits, N]
        base = part_ptr + pid_s * N + rows.to(tl.int64)
        plane = n_splits * N
        tl.store(base + 0 * plane, m_s, mask=row_ok)
        tl.store(base + 1 * plane, s_s, mask=row_ok)
        tl.store(base + 2 * plane, b_s, mask=row_ok)
        tl.store(base + 3 * plane, d_st, mask=row_ok)
        tl.store(base + 4 * plane, m_t, mask=row_ok)
        tl.store(base + 5 * plane, s_t, mask=row_ok)

    return _kl_ent_partial_kernel


def default_config(device: torch.device | None = None, dtype: torch.dtype = torch.bfloat16) -> FusedConfig:
    """Tile settings for ``device``: 128×128×64, 8 warps, as many pipeline stages (≤ 3) as fit.

    The shared-memory need per stage is (2·block_n + block_v)·block_k·itemsize (two hidden tiles
    and one W tile); Hopper/A100 fit 3 stages in bf16, smaller parts get fewer. float32 inputs
    (a test path: no tensor cores with ``input_precision="ieee"``) use 64 × 128 × 32.
    CPU (interpreter): small tiles, fast to simulate. Measured on an H200 (triton 3.6, 8,192 ×
    151,936 × 2,560 bf16): 1.28× the two-matmul floor, 232 registers, no spills, 144 KiB shared
    memory; the best of eight tile settings tried (``benchmarks/results/h200-2026-11-26``).
    """
    if device is None or torch.device(device).type != "cuda":
        return FusedConfig(block_n=16, block_v=32, block_k=16, num_warps=1, num_stages=1)
    # float32 (ieee, no tensor cores): 64 rows keep it free of register spills (ptxas, sm_90a)
    block_n, block_k = (64, 32) if dtype == torch.float32 else (128, 64)
    cfg = FusedConfig(block_n=block_n, block_k=block_k)
    props = torch.cuda.get_device_properties(device)
    smem = int(getattr(props, "shared_memory_per_block_optin", 0) or 0)
    per_stage = (2 * cfg.block_n + cfg.block_v) * cfg.block_k * torch.empty((), dtype=dtype).element_size()
    if smem:
        stages = max(1, min(3, (smem - 8192) // per_stage))
        cfg = FusedConfig(block_n=block_n, block_k=block_k, num_stages=int(stages))
    return cfg


def _choose_split_v(n_row_blocks: int, vocab: int, block_v: int, n_sms: int) -> int:
    """Vocabulary entries per program so that programs = row blocks × splits fill whole waves.

    Programs do equal work, so a grid of P programs on ``n_sms`` multiprocessors (one resident
    program each at the default tiles) takes ⌈P / n_sms⌉ waves; we pick the number of splits
    in [⌈n_sms / row blocks⌉, 64] (each split ≥ 4 column blocks) with the least idle fraction,
    ties to fewer splits. E.g. 64 row blocks, 132 SMs, V = 151,936 → 33 splits, 16 full waves.
    """
    n_vblocks = math.ceil(vocab / block_v)
    lo = max(1, math.ceil(n_sms / max(n_row_blocks, 1)))
    hi = max(lo, min(64, n_vblocks // 4))
    best, best_waste = 1, math.inf
    for s in range(lo, hi + 1):
        progs = n_row_blocks * s
        waste = (math.ceil(progs / n_sms) * n_sms - progs) / progs
        if waste < best_waste - 1e-9:
            best, best_waste = s, waste
    best = min(best, n_vblocks)
    return math.ceil(n_vblocks / best) * block_v


def _merge_partials(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge per-split (m, S, B, D, n, T) [6, n_splits, N] into (kl, entropy) (N,); see module doc."""
    m_k, s_k, b_k, d_k, n_k, t_k = part.unbind(0)
    big_m = m_k.amax(dim=0)
    c_k = torch.exp(m_k - big_m)
    s = (c_k * s_k).sum(0)
    b = (c_k * (b_k + s_k * (m_k - big_m))).sum(0)
    d = (c_k * d_k).sum(0)
    big_n = n_k.amax(dim=0)
    t = (torch.exp(n_k - big_n) * t_k).sum(0)
    log_s, log_t = torch.log(s), torch.log(t)
    ent = log_s - b / s
    kl = (d / s - (big_m - big_n)) + (log_t - log_s)
    return kl, ent


def _launch(
    hs: torch.Tensor, ht: torch.Tensor, w: torch.Tensor, cfg: FusedConfig, interpret: bool
) -> tuple[torch.Tensor, Any]:
    """Run the kernel on validated (N, H), (N, H), (V, H) inputs (unit last stride).

    Returns the partials [6, n_splits, N] (m, S, B, D, n, T) and Triton's compiled-kernel
    handle (``n_regs``, ``n_spills``, ``metadata.shared`` on GPU; None when interpreted).
    """
    kernel = _kernel()
    n, v, h = hs.shape[0], w.shape[0], w.shape[1]
    n_row_blocks = math.ceil(n / cfg.block_n)
    if cfg.split_v is not None:
        split_v = cfg.split_v
    else:
        n_sms = torch.cuda.get_device_properties(w.device).multi_processor_count if w.is_cuda else 4
        split_v = _choose_split_v(n_row_blocks, v, cfg.block_v, n_sms)
    n_splits = math.ceil(v / split_v)
    part = torch.empty((6, n_splits, n), dtype=torch.float32, device=hs.device)
    grid = (n_row_blocks * n_splits,)
    # Triton's interpreter stores bf16 as uint16 and its tl.dot multiplies those raw bits
    # (seen with triton 3.6): upcast there. bf16·bf16 products are exact in float32, so this is
    # the same arithmetic as the GPU's bf16 tensor-core dot with float32 accumulation.
    upcast = interpret and w.dtype == torch.bfloat16
    compiled = kernel[grid](
        hs, ht, w, part,
        n, v, h, hs.stride(0), ht.stride(0), w.stride(0), split_v, n_splits,
        BLOCK_N=cfg.block_n, BLOCK_V=cfg.block_v, BLOCK_K=cfg.block_k,
        INPUT_PRECISION="ieee" if (w.dtype == torch.float32 or upcast) else "tf32",
        NEG=_NEG, UPCAST=upcast,
        FLATTEN=cfg.flatten, WARP_SPECIALIZE=cfg.warp_specialize, EVEN_K=h % cfg.block_k == 0,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return part, compiled


def _offline_compile_report(
    config: FusedConfig | None = None, dtype: torch.dtype = torch.bfloat16, capability: int = 90, even_k: bool = True
) -> dict[str, Any]:
    """Compile the kernel ahead of time for an NVIDIA target, no GPU needed (developer check).

    Runs Triton's compiler for ``sm_<capability>`` and the ptxas bundled with Triton, and returns
    ``{"shared": bytes, "registers": int, "spill_bytes": int, "wgmma": count, "ptxas": text}``.
    Uses Triton internals (``ASTSource``, ``GPUTarget``; checked with triton 3.6), so treat a
    failure here as "cannot check", not as a kernel bug. Not available under TRITON_INTERPRET=1.
    """
    import re
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    if _interpret():
        raise AlgorithmError("offline compilation needs TRITON_INTERPRET unset")
    cfg = config or (FusedConfig(block_n=64, block_k=32) if dtype == torch.float32 else FusedConfig())
    ty = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[dtype]
    sig = {"hs_ptr": f"*{ty}", "ht_ptr": f"*{ty}", "w_ptr": f"*{ty}", "part_ptr": "*fp32"}
    sig.update({k: "i32" for k in ("N", "V", "H", "stride_hs", "stride_ht", "stride_w", "split_v", "n_splits")})
    const = dict(
        BLOCK_N=cfg.block_n, BLOCK_V=cfg.block_v, BLOCK_K=cfg.block_k,
        INPUT_PRECISION="ieee" if dtype == torch.float32 else "tf32", NEG=_NEG, UPCAST=False,
        FLATTEN=cfg.flatten, WARP_SPECIALIZE=cfg.warp_specialize, EVEN_K=even_k,
    )
    sig.update({k: "constexpr" for k in const})
    aligned = (0, 1, 2, 3, 7, 8, 9)  # pointers and row strides: multiples of 16 (as H = 2,560 gives)
    src = ASTSource(fn=_kernel(), signature=sig, constexprs=const, attrs={(i,): [["tt.divisibility", 16]] for i in aligned})
    ck = triton.compile(
        src, target=GPUTarget("cuda", capability, 32), options=dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    )
    ptx = ck.asm["ptx"]
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        arch = f"sm_{capability}a" if capability == 90 else f"sm_{capability}"
        res = subprocess.run([ptxas, "-v", "--gpu-name", arch, path, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=True)
    regs = re.search(r"Used (\d+) registers", res.stderr)
    spills = re.search(r"(\d+) bytes spill stores", res.stderr)
    return {
        "shared": int(ck.metadata.shared),
        "registers": int(regs.group(1)) if regs else -1,
        "spill_bytes": int(spills.group(1)) if spills else -1,
        "wgmma": ptx.count("wgmma.mma_async"),
        "ptxas": res.stderr.strip(),
    }


@torch.no_grad()
def reverse_kl_and_entropy_fused(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    *,
    config: FusedConfig | None = None,
    chunk_size: int | None = None,
    vocab_chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused reverse ``KL(p_S‖p_T)`` and ``H(p_S)`` without materialising logits (Triton).

    Shapes: student_hidden, teacher_hidden (..., H); lm_head_weight (V, H); one dtype among
    bfloat16, float16, float32 → kl (...), entropy (...), float32, detached. Equations and
    online update: module docstring. ``config`` overrides the tiles (:class:`FusedConfig`);
    ``chunk_size`` / ``vocab_chunk_size`` are accepted for the backend signature of
    :func:`algorithms.divergence.reverse_kl_and_entropy` and ignored (the kernel tiles itself).
    Inputs must be CUDA tensors, or CPU tensors with ``TRITON_INTERPRET=1`` (slow; tests only).
    Extra memory: 24 · n_splits · N bytes of partials (≈ 6.5 MB at N = 8,192, 33 splits).
    Source: ours (online softmax as in Milakov & Gimelshein 2018).
    """
    del chunk_size, vocab_chunk_size
    hs, ht, lead = _flatten(student_hidden, teacher_hidden, lm_head_weight)
    w = lm_head_weight
    if w.dtype not in _SUPPORTED_DTYPES:
        raise ShapeError(
            f"fused divergence supports dtypes bfloat16, float16, float32; got {w.dtype} "
            "(use backend='chunked')"
        )
    if not (hs.device == ht.device == w.device):
        raise ShapeError(
            f"student_hidden, teacher_hidden and lm_head_weight must be on one device, got "
            f"{hs.device}, {ht.device}, {w.device}"
        )
    if hs.shape[0] == 0:
        empty = torch.empty(lead, dtype=torch.float32, device=hs.device)
        return empty, empty.clone()
    interpret = _interpret()
    if w.device.type != "cuda" and not interpret:
        raise AlgorithmError(
            f"fused divergence needs CUDA tensors, got device {w.device}; set TRITON_INTERPRET=1 "
            "before the first call to run Triton's CPU interpreter, or use backend='chunked'"
        )
    if w.is_cuda and type(_kernel()).__name__ == "InterpretedFunction":
        raise AlgorithmError(
            "the Triton kernel was built in interpreter mode (TRITON_INTERPRET=1 at first use); "
            "unset it and restart to run on CUDA"
        )
    hs = hs if hs.stride(-1) == 1 else hs.contiguous()
    ht = ht if ht.stride(-1) == 1 else ht.contiguous()
    w = w if w.stride(-1) == 1 else w.contiguous()

    part, _ = _launch(hs, ht, w, config or default_config(w.device, w.dtype), interpret)
    kl, ent = _merge_partials(part)
    kl, ent = _check_out(kl, ent)
    return kl.reshape(lead), ent.reshape(lead)


def _fused_backend(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    *,
    chunk_size: int = 1024,
    vocab_chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backend adapter: the fused kernel for CUDA bf16/fp16/fp32, else the chunked path."""
    if lm_head_weight.is_cuda and lm_head_weight.dtype in _SUPPORTED_DTYPES:
        return reverse_kl_and_entropy_fused(student_hidden, teacher_hidden, lm_head_weight)
    return reverse_kl_and_entropy_chunked(
        student_hidden, teacher_hidden, lm_head_weight, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
    )


def register(*, force: bool = False) -> bool:
    """Register the kernel as divergence backend ``"fused"`` if Triton and CUDA are available.

    Returns whether it is registered. ``force=True`` registers even without CUDA (tests with
    the interpreter). Idempotent. After it, ``reverse_kl_and_entropy(..., backend="auto")``
    uses the kernel for CUDA tensors (float64 CUDA inputs fall back to the chunked path).
    """
    ok, _ = fused_available()
    if not (ok or force):
        return False
    register_divergence_backend("fused", _fused_backend, overwrite=True)
    return True
