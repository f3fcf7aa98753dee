"""Cheap input checks shared by the public functions (ours, internal)."""

from __future__ import annotations

import torch

from algorithms.errors import NonFiniteError, ShapeError
from sgcd_common import unknown_choice

LOSS_AGG_MODES = (
    "token-mean",
    "token-sum",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)


def finite(name: str, t: torch.Tensor) -> torch.Tensor:
    """Raise :class:`NonFiniteError` naming ``name`` unless every element of ``t`` is finite."""
    if not isinstance(t, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise NonFiniteError(
            f"{name} contains {n_bad} non-finite value(s) (NaN or inf) out of {t.numel()}; "
            "all inputs must be finite"
        )
    return t


def same_shape(**tensors: torch.Tensor) -> tuple[int, ...]:
    """Raise :class:`ShapeError` unless all given tensors have one shape; return it."""
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        desc = ", ".join(f"{k}={s}" for k, s in shapes.items())
        raise ShapeError(f"expected equal shapes, got {desc}")
    return first


def ndim(name: str, t: torch.Tensor, n: int) -> None:
    """Raise :class:`ShapeError` unless ``t.ndim == n``."""
    if t.ndim != n:
        raise ShapeError(f"{name} must have {n} dimension(s), got shape {tuple(t.shape)}")


def agg_mode(mode: str) -> str:
    """Validate a ``loss_agg_mode`` name (verl's names), suggesting the closest one."""
    if mode not in LOSS_AGG_MODES:
        raise ShapeError(unknown_choice("loss_agg_mode", mode, LOSS_AGG_MODES))
    return mode


def positive_mask(name: str, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` as a float tensor of ``like``'s dtype; values must be in {0, 1} or [0, 1]."""
    if mask.shape != like.shape:
        raise ShapeError(f"{name} must have shape {tuple(like.shape)}, got {tuple(mask.shape)}")
    m = mask.to(like.dtype if like.is_floating_point() else torch.float32)
    finite(name, m)
    if bool((m < 0).any()):
        raise ShapeError(f"{name} must be non-negative (a 0/1 response mask)")
    return m


def paired_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """Student and teacher logits: the same (..., V) shape and finite."""
    if student_logits.shape != teacher_logits.shape:
        raise ShapeError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits "
            f"{tuple(teacher_logits.shape)} must have the same shape (..., V)"
        )
    finite("student_logits", student_logits)
    finite("teacher_logits", teacher_logits)
