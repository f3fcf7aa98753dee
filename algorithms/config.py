"""Validated, frozen settings for each method (SPEC §3). The caller unpacks them into the math
functions' keyword arguments; no math function reads a config object.

Each field has a one-line docstring (below it) naming its source: "paper" (a number the cited
paper states), "SDPO reference code" (github.com/lasgroup/SDPO, research/papers.md §2.1),
"verl" (verl 0.9.1 default) or "ours" (a documented choice; the SGCD paper's values are not
available, research/papers.md §1.3). Bad values raise :class:`ConfigError` at construction,
naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from algorithms._checks import LOSS_AGG_MODES
from algorithms.errors import ConfigError
from sgcd_common import did_you_mean

__all__ = ["ConfigError", "GRPOConfig", "DynamicSamplingConfig", "SGCDConfig", "SDPOConfig"]


def _need(cfg: Any, name: str, ok: bool, allowed: str) -> None:
    if not ok:
        value = getattr(cfg, name)
        raise ConfigError(f"{type(cfg).__name__}.{name} = {value!r} is invalid: must be {allowed}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _choice(cfg: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(f"{type(cfg).__name__}.{name} = {value!r} is invalid: choose one of "
                          f"{', '.join(choices)}.{did_you_mean(value, choices)}")


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO+KL, the matched comparator (SPEC §3.3–3.4); SGCD uses it unchanged."""

    group_size: int = 8
    """G, sibling rollouts per task (ours; papers.md §1.4 suggests 8; SDPO runs use n=8)."""
    eps_lo: float = 0.2
    """ε_lo, lower clip: ρ ≥ 1 − ε_lo (PPO paper default 0.2)."""
    eps_hi: float = 0.28
    """ε_hi, upper clip: ρ ≤ 1 + ε_hi ("clip-higher", DAPO paper 0.28)."""
    clip_ratio_c: float | None = 3.0
    """Dual-clip bound c > 1 on −Â·ρ for Â < 0 (verl ``clip_ratio_c`` default 3.0; None = off). Inert
    on-policy (ρ = 1 in the local trainer's one epoch on fresh rollouts)."""
    beta_kl: float = 0.001
    """β_KL, coefficient of the k3 KL(π_θ‖π_ref) loss term (verl kl_loss_coef default; ours)."""
    norm_by_std: bool = True
    """Divide group advantages by the group std (GRPO paper; SDPO runs use False)."""
    adv_eps: float = 1e-6
    """eps in A = (R − mean)/(std + eps) (verl default 1e-6)."""
    loss_agg_mode: str = "token-mean"
    """How the per-token loss is reduced; verl's names (SPEC §3.4: token-mean)."""
    lr: float = 1e-6
    """Actor learning rate (ours; SDPO tool-use runs use 1e-5, its LCB runs 1e-6)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (verl default 1.0)."""

    def __post_init__(self) -> None:
        _need(self, "group_size", _is_int(self.group_size) and self.group_size >= 2, "an integer >= 2")
        _need(self, "eps_lo", _finite(self.eps_lo) and 0.0 <= self.eps_lo < 1.0, "a number in [0, 1)")
        _need(self, "eps_hi", _finite(self.eps_hi) and self.eps_hi >= 0.0, "a finite number >= 0")
        _need(self, "clip_ratio_c", self.clip_ratio_c is None or (_finite(self.clip_ratio_c) and self.clip_ratio_c > 1.0),
              "None or a number > 1")
        _need(self, "beta_kl", _finite(self.beta_kl) and self.beta_kl >= 0.0, "a finite number >= 0")
        _need(self, "norm_by_std", isinstance(self.norm_by_std, bool), "a bool")
        _need(self, "adv_eps", _finite(self.adv_eps) and self.adv_eps >= 0.0, "a finite number >= 0")
        _choice(self, "loss_agg_mode", LOSS_AGG_MODES)
        _need(self, "lr", _finite(self.lr) and self.lr > 0.0, "a finite number > 0")
        _need(self, "max_grad_norm", _finite(self.max_grad_norm) and self.max_grad_norm > 0.0, "a finite number > 0")


@dataclass(frozen=True)
class DynamicSamplingConfig:
    """Keep mixed groups, draw more tasks until the batch is full (SPEC §3.2; same for all methods)."""

    enabled: bool = True
    """Drop groups whose rewards are all equal (DAPO paper; SGCD abstract uses dynamic sampling)."""
    groups_per_batch: int = 8
    """Mixed groups wanted per training batch (ours)."""
    oversample_factor: float = 1.5
    """Extra tasks drawn per missing group, ≥ 1 (ours; roughly 1 / expected keep rate)."""
    max_rounds: int = 4
    """Resample rounds per batch before training on what was kept (ours; verl max_num_gen_batches)."""

    def __post_init__(self) -> None:
        _need(self, "enabled", isinstance(self.enabled, bool), "a bool")
        _need(self, "groups_per_batch", _is_int(self.groups_per_batch) and self.groups_per_batch >= 1, "an integer >= 1")
        _need(self, "oversample_factor", _finite(self.oversample_factor) and self.oversample_factor >= 1.0, "a finite number >= 1")
        _need(self, "max_rounds", _is_int(self.max_rounds) and self.max_rounds >= 1, "an integer >= 1")


@dataclass(frozen=True)
class SGCDConfig:
    """SGCD credit weights (SPEC §3.5); the actor loss is GRPO+KL with w·A. All defaults ours."""

    gamma: float = 0.0
    """γ in s = D + γ·H, weight of student entropy in the credit score (ours, SPEC §3.5e)."""
    beta: float = 1.0
    """β in w = clip(1 + β(z − 1)), strength of the reweighting; 0 gives w ≡ 1 (ours)."""
    w_min: float = 0.5
    """Lower weight bound, 0 < w_min ≤ 1 (ours, SPEC §3.5e)."""
    w_max: float = 2.0
    """Upper weight bound, w_max ≥ 1 (ours, SPEC §3.5e)."""
    teacher: Literal["current", "ema"] = "current"
    """Teacher weights: the current policy (no grad) or an EMA of it (ours; SPEC §3.5c allows both)."""
    ema_rate: float = 0.05
    """EMA rate when teacher="ema" (SDPO reference code's teacher_update_rate)."""
    chunk_size: int = 1024
    """Tokens per chunk in the divergence computation (ours; benchmarks/divergence.py)."""
    vocab_chunk_size: int | None = 8192
    """Vocabulary slice for the streaming log-sum-exp; None = whole vocabulary per chunk (ours:
    fastest and smallest of the measured settings on CPU, benchmarks/divergence.py)."""
    divergence_backend: str = "auto"
    """Divergence implementation: auto, chunked, naive or a registered fused kernel (ours)."""

    def __post_init__(self) -> None:
        _need(self, "gamma", _finite(self.gamma) and self.gamma >= 0.0, "a finite number >= 0")
        _need(self, "beta", _finite(self.beta) and self.beta >= 0.0, "a finite number >= 0")
        _need(self, "w_min", _finite(self.w_min) and 0.0 < self.w_min <= 1.0, "a number in (0, 1]")
        _need(self, "w_max", _finite(self.w_max) and self.w_max >= 1.0, "a finite number >= 1")
        _need(self, "w_max", self.w_max >= self.w_min, f"a number >= w_min ({self.w_min!r})")
        _choice(self, "teacher", ("current", "ema"))
        _need(self, "ema_rate", _finite(self.ema_rate) and 0.0 <= self.ema_rate <= 1.0, "a number in [0, 1]")
        _need(self, "chunk_size", _is_int(self.chunk_size) and self.chunk_size >= 1, "an integer >= 1")
        _need(self, "vocab_chunk_size",
              self.vocab_chunk_size is None or (_is_int(self.vocab_chunk_size) and self.vocab_chunk_size >= 1),
              "None or an integer >= 1")
        _need(self, "divergence_backend", isinstance(self.divergence_backend, str) and bool(self.divergence_backend),
              "a backend name such as 'auto', 'chunked' or 'naive'")


@dataclass(frozen=True)
class SDPOConfig:
    """SDPO baseline (SPEC §3.6), defaults from the SDPO reference code's generalisation runs."""

    alpha: float = 0.5
    """α of the generalised JSD: 0 forward KL, 1 reverse KL, 0.5 JSD (SDPO reference code)."""
    topk: int | None = 100
    """Student top-k ids the divergence runs over; None = full vocabulary (SDPO reference code)."""
    add_tail: bool = True
    """Add a tail bucket 1 − Σ top-k instead of renormalising (SDPO reference code)."""
    is_clip: float | None = 2.0
    """Cap on the importance ratio π_θ/π_old; None disables (SDPO reference code)."""
    ema_rate: float = 0.05
    """Teacher EMA rate r in θ_T ← (1−r)θ_T + rθ_S (SDPO reference code teacher_update_rate)."""
    success_threshold: float = 1.0
    """Reward at or above which a sibling is a demonstration (SDPO README; its actor.yaml says 0.5)."""
    dont_reprompt_on_self_success: bool = True
    """Never show a sample its own output as the demonstration (SDPO reference code)."""
    include_feedback: bool = True
    """Use environment feedback when no sibling succeeded (SDPO reference code)."""
    max_reprompt_chars: int = 40_000
    """Right-truncation of the privileged section, in characters (ours; reference: 10,240 tokens)."""
    beta_kl: float = 0.001
    """Optional KL-to-reference coefficient added to the SDPO loss (ours: matched to GRPOConfig)."""
    loss_agg_mode: str = "token-mean"
    """Aggregation over distilled tokens (SDPO reference code: token-mean)."""

    def __post_init__(self) -> None:
        _need(self, "alpha", _finite(self.alpha) and 0.0 <= self.alpha <= 1.0, "a number in [0, 1]")
        _need(self, "topk", self.topk is None or (_is_int(self.topk) and self.topk >= 1), "None or an integer >= 1")
        _need(self, "add_tail", isinstance(self.add_tail, bool), "a bool")
        _need(self, "is_clip", self.is_clip is None or (_finite(self.is_clip) and self.is_clip > 0.0), "None or a number > 0")
        _need(self, "ema_rate", _finite(self.ema_rate) and 0.0 <= self.ema_rate <= 1.0, "a number in [0, 1]")
        _need(self, "success_threshold", _finite(self.success_threshold), "a finite number")
        _need(self, "dont_reprompt_on_self_success", isinstance(self.dont_reprompt_on_self_success, bool), "a bool")
        _need(self, "include_feedback", isinstance(self.include_feedback, bool), "a bool")
        _need(self, "max_reprompt_chars", _is_int(self.max_reprompt_chars) and self.max_reprompt_chars >= 1, "an integer >= 1")
        _need(self, "beta_kl", _finite(self.beta_kl) and self.beta_kl >= 0.0, "a finite number >= 0")
        _choice(self, "loss_agg_mode", LOSS_AGG_MODES)


def config_fields(cls: type) -> dict[str, str]:
    """Field name → its docstring (for CLI help), read from the class source (ours)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    out: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            out[a.target.id] = str(b.value.value)  # type: ignore[union-attr]
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in out]
    assert not missing, f"undocumented fields in {cls.__name__}: {missing}"
    return out
