"""Method registry: CLI name → what each trainer runs for it (ours).

This is the one list of methods. The CLI validates ``--method`` against it, the local trainer
builds the method's part of the step from ``spec.local``, and the verl plugin installs
``spec.verl`` as verl's sync trainer. Entry points are ``"module:attribute"`` strings resolved
on use (``sgcd_common.load_entry_point``), so this module keeps importing only torch.

Adding a method = one module with its local part (a subclass of
``adapters.local.methods.LocalMethod``) + one :func:`register_method` call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from algorithms.config import SDPOConfig, SGCDConfig
from algorithms.errors import UnknownMethodError
from algorithms.grpo import grpo_kl_loss
from algorithms.sdpo import sdpo_loss
from algorithms.sgcd import sgcd_loss
from sgcd_common import unknown_choice

__all__ = ["METHODS", "MethodSpec", "get_method", "register_method", "unregister_method"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class MethodSpec:
    """What one training method is, and where each trainer finds its implementation."""

    name: str
    """CLI name (``sgcd-bench train NAME``, ``algorithm.method=NAME`` on verl)."""
    description: str
    local: str
    """``"module:Class"`` of the local trainer's part: a ``LocalMethod`` subclass."""
    loss_fn: Callable[..., Any]
    """The method's loss formula in ``algorithms`` (what its local part and verl part call)."""
    config: type | None = None
    """The method's own settings dataclass (None: only the shared GRPO and sampling settings)."""
    verl: str | None = None
    """``"module:Class"`` of its verl sync trainer; None = local trainer only."""
    needs_teacher: bool = False
    """Whether a teacher forward pass (privileged context) runs each step."""
    needs_summarizer: bool = False
    """Whether sibling contrasts are summarised into a credit reference (SGCD)."""
    replaces_pg_loss: bool = False
    """True if the loss is not a policy-gradient loss (SDPO)."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"method name {self.name!r}: use lower-case letters, digits, '-' or '_'")
        for field_name in ("local", "verl"):
            value = getattr(self, field_name)
            if value is not None and value.count(":") != 1:
                raise ValueError(f"MethodSpec.{field_name} = {value!r}: expected 'package.module:Attribute'")


_REGISTRY: dict[str, MethodSpec] = {}

METHODS: Mapping[str, MethodSpec] = MappingProxyType(_REGISTRY)
"""Registered methods by name, in registration order (a read-only live view)."""


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` under ``spec.name``; a name may be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a registered method (tests register toy methods and clean up after themselves)."""
    get_method(name)
    del _REGISTRY[name]


def get_method(name: str) -> MethodSpec:
    """Look up a method by CLI name; unknown names raise :class:`UnknownMethodError` with a
    "Did you mean" suggestion."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(unknown_choice("method", name, _REGISTRY)) from None


register_method(MethodSpec(
    "grpo", "GRPO+KL: group advantages, PPO clip, k3 KL to the reference (matched comparator).",
    local="adapters.local.methods.grpo:GRPO", loss_fn=grpo_kl_loss,
    verl="verl.trainer.ppo.v1.trainer_sync:PPOTrainerSync",
))
register_method(MethodSpec(
    "sgcd", "SGCD: GRPO+KL with token advantages w·A from teacher/student divergence (no distillation loss).",
    local="adapters.local.methods.sgcd:SGCD", loss_fn=sgcd_loss, config=SGCDConfig,
    verl="adapters.verl.trainer:SGCDTrainerSync", needs_teacher=True, needs_summarizer=True,
))
register_method(MethodSpec(
    "sdpo", "SDPO: generalised-JSD self-distillation to an EMA teacher replaces the PG loss.",
    local="adapters.local.methods.sdpo:SDPO", loss_fn=sdpo_loss, config=SDPOConfig,
    verl="adapters.verl.trainer:SDPOTrainerSync", needs_teacher=True, replaces_pg_loss=True,
))
