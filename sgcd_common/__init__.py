"""Standard-library helpers that every sgcd-bench package may import (it imports none of them)."""

from .imports import load_entry_point
from .suggest import did_you_mean, unknown_choice

__all__ = ["did_you_mean", "load_entry_point", "unknown_choice"]
