"""Import guard shared by tests/verl: skip without verl 0.9.1, fail when SGCD_REQUIRE_VERL=1.

Usage at the top of a test module: ``from verl_required import verl``. tests/verl runs in the
``.venv-verl`` built by ``scripts/setup_verl.sh``; CI sets ``SGCD_REQUIRE_VERL=1`` so that a broken
install fails instead of silently skipping.
"""

from __future__ import annotations

import os

import pytest

REQUIRED_VERSION = "0.9.1"
REQUIRE = os.getenv("SGCD_REQUIRE_VERL", "") == "1"

try:
    import verl
except ImportError as exc:  # pragma: no cover - depends on the venv
    if REQUIRE:
        raise ImportError(f"SGCD_REQUIRE_VERL=1 but verl is not importable ({exc}); run scripts/setup_verl.sh") from exc
    pytest.skip(
        f"verl {REQUIRED_VERSION} not installed ({exc}); run scripts/setup_verl.sh and use .venv-verl",
        allow_module_level=True,
    )

if verl.__version__ != REQUIRED_VERSION:  # pragma: no cover
    message = f"tests/verl need verl {REQUIRED_VERSION}, found {verl.__version__}"
    if REQUIRE:
        raise ImportError(message)
    pytest.skip(message, allow_module_level=True)

__all__ = ["verl"]
