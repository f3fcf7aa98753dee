"""Standard-library helpers that every sgcd-bench package may import (it imports none of them)."""

from .suggest import did_you_mean, unknown_choice

__all__ = ["did_you_mean", "unknown_choice"]
