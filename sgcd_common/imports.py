"""``"package.module:Attribute"`` references, resolved on use (registries name code this way so
that importing them stays cheap and free of the named packages' dependencies)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["load_entry_point"]


def load_entry_point(path: str) -> Any:
    """``"package.module:Attribute"`` → the attribute (imports the module)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
