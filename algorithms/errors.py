"""Exception types raised by :mod:`algorithms` (ours).

Every error names the offending field or argument, the value received and what is allowed, so a
caller (trainer, verl plugin, CLI) can print one line and stop.
"""

from __future__ import annotations

__all__ = ["AlgorithmError", "ConfigError", "NonFiniteError", "ShapeError", "UnknownMethodError"]


class AlgorithmError(ValueError):
    """Base class of every error raised by :mod:`algorithms` (a ``ValueError``)."""


class ConfigError(AlgorithmError):
    """A settings dataclass got a value outside its allowed range (raised in ``__post_init__``)."""


class NonFiniteError(AlgorithmError):
    """A tensor passed to a public function holds NaN or ±inf."""


class ShapeError(AlgorithmError):
    """Tensors passed together have incompatible shapes or dtypes."""


class UnknownMethodError(AlgorithmError, KeyError):
    """An unknown method name was looked up in :data:`algorithms.registry.METHODS`."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""
