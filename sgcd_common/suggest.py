"""The "Did you mean" hint of every unknown-name error (methods, envs, splits, tools, fields, ...)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "unknown_choice"]


def did_you_mean(value: object, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``choices`` (up to ``n``: ``'x', 'y' or 'z'``),
    or ``""`` when none is close (``difflib`` ratio below ``cutoff``)."""
    close = [repr(c) for c in difflib.get_close_matches(str(value), list(choices), n=n, cutoff=cutoff)]
    if not close:
        return ""
    listed = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f" Did you mean {listed}?"


def unknown_choice(what: str, value: object, choices: Iterable[str]) -> str:
    """``"Unknown <what> 'v'. Choose one of: a, b, c. Did you mean 'a'?"``."""
    choices = list(choices)
    return f"Unknown {what} {value!r}. Choose one of: {', '.join(choices)}.{did_you_mean(value, choices)}"
