"""Pure PyTorch math of sgcd-bench (imports only torch and the standard library).

Modules (one formula per function, hyperparameters as keyword arguments, ``(value, metrics)``
returns; see each docstring for the equation, shapes, what is detached and the source):

- :mod:`algorithms.grpo` — group advantages, PPO clip loss, k3 KL, GRPO+KL loss, aggregation.
- :mod:`algorithms.sampling` — dynamic sampling (mixed groups, how many more tasks to draw).
- :mod:`algorithms.divergence` — chunked reverse KL(student‖teacher) and entropy from hidden
  states and the LM head, with a backend hook for a fused GPU kernel.
- :mod:`algorithms.sgcd` — credit scores → bounded detached weights → w·A.
- :mod:`algorithms.credit_reference` (a package) — sibling rendering, credit-reference prompt/parse,
  offline stand-in summarizer, teacher context.
- :mod:`algorithms.sdpo` — the SDPO baseline (generalised JSD over top-k + tail, IS cap, EMA
  teacher, demonstrations and reprompting).
- :mod:`algorithms.config` — validated frozen settings per method.
- :mod:`algorithms.registry` — ``METHODS``, the one list of methods (grpo, sgcd, sdpo, and any
  registered one) that the CLI, the local trainer and the verl plugin dispatch through.

All errors derive from :class:`algorithms.errors.AlgorithmError` (a ``ValueError``).
"""

from algorithms.errors import (
    AlgorithmError,
    ConfigError,
    NonFiniteError,
    ShapeError,
    UnknownMethodError,
)

__all__ = ["AlgorithmError", "ConfigError", "NonFiniteError", "ShapeError", "UnknownMethodError"]
