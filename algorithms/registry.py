"""Method registry: CLI name → what a trainer needs to run it (ours).

``METHODS`` is plain data; the trainer and the verl plugin look a method up with
:func:`get_method` and call ``spec.loss_fn`` with the keyword arguments unpacked from the
method's config classes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from algorithms.config import DynamicSamplingConfig, GRPOConfig, SDPOConfig, SGCDConfig
from algorithms.errors import UnknownMethodError
from algorithms.grpo import grpo_kl_loss
from algorithms.sdpo import sdpo_loss
from algorithms.sgcd import sgcd_loss

__all__ = ["MethodSpec", "METHODS", "get_method"]


@dataclass(frozen=True)
class MethodSpec:
    """What one training method needs."""

    name: str
    """CLI name (``--method``)."""
    configs: tuple[type, ...]
    """Settings dataclasses the method reads, in order (all methods share dynamic sampling)."""
    loss_fn: Callable
    """The actor loss to call; returns ``(loss, metrics)``."""
    needs_teacher: bool
    """Whether a teacher forward pass (privileged context) is run each step."""
    needs_summarizer: bool
    """Whether sibling contrasts are summarised into a credit reference (SGCD only)."""
    replaces_pg_loss: bool
    """True if the loss is not a policy-gradient loss (SDPO)."""
    description: str


METHODS: Mapping[str, MethodSpec] = MappingProxyType({
    "grpo": MethodSpec(
        "grpo", (GRPOConfig, DynamicSamplingConfig), grpo_kl_loss, False, False, False,
        "GRPO+KL: group advantages, PPO clip, k3 KL to the reference (matched comparator).",
    ),
    "sgcd": MethodSpec(
        "sgcd", (GRPOConfig, SGCDConfig, DynamicSamplingConfig), sgcd_loss, True, True, False,
        "SGCD: GRPO+KL with token advantages w·A from teacher/student divergence (no distillation loss).",
    ),
    "sdpo": MethodSpec(
        "sdpo", (SDPOConfig, DynamicSamplingConfig), sdpo_loss, True, False, True,
        "SDPO: generalised-JSD self-distillation to an EMA teacher replaces the PG loss.",
    ),
})


def get_method(name: str) -> MethodSpec:
    """Look up a method by CLI name; unknown names raise :class:`UnknownMethodError` with a
    "Did you mean" suggestion (difflib)."""
    try:
        return METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(METHODS), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownMethodError(
            f"Unknown method {name!r}. Choose one of: {', '.join(METHODS)}.{hint}"
        ) from None
