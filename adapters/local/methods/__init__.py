"""The local trainer's per-method parts, one module per method (see :mod:`.base`).

The registry (``algorithms.registry.METHODS``) names each class by ``MethodSpec.local``:
:mod:`.grpo` (GRPO+KL), :mod:`.sgcd` (credit-weighted advantages), :mod:`.sdpo` (self-distillation).
"""

from .base import EMATeacher, LocalMethod, MethodContext, Signal, UpdateInputs, build_method, frozen_copy

__all__ = ["EMATeacher", "LocalMethod", "MethodContext", "Signal", "UpdateInputs", "build_method", "frozen_copy"]
