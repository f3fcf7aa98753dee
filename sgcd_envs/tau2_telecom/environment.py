"""The telecom environment's dual control (upstream ``TelecomEnvironment`` and
``Environment.set_state`` / ``get_response`` / ``run_env_function_call``): both sides' calls on one
:class:`~.state.TelecomState`, and the sync that keeps the user's world in step with the agent DB.

:func:`sync` runs, as upstream, after every successful tool call of either side, after every
initialisation or assertion function and once when the initial state is set: for the user's
phone number it sets ``line_active``, ``roaming_allowed`` and ``mobile_data_usage_exceeded``
from the line, turns a paid payment request into a paid bill, and raises a payment request for
the first of the customer's bills awaiting payment. (Upstream's gold replay calls the tools
without syncing; only its DB hash, not in telecom's reward, sees that.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..core import ToolCall, ToolSpec, validate_arguments
from ..tau_common.tools import run_atomically
from . import tools as agent_side
from . import user_tools as user_side
from .data import base_db
from .state import TelecomState
from .tasks import EnvCall, Requestor, Task
from .tools import TOOL_ERRORS, to_text


def sync(db: TelecomState) -> None:
    """Bring the user's surroundings in line with the agent DB (upstream ``sync_tools``)."""
    where = db.surroundings
    phone = where["phone_number"]
    if phone is None:
        return
    line = agent_side.line_by_phone(db, phone)
    plan = db.plans.peek(line["plan_id"])
    if plan is None:
        raise ValueError(f"Wrong scenario, invalid plan id ({line['plan_id']}) for the phone number {phone}")
    where["line_active"] = line["status"] == "Active"
    where["roaming_allowed"] = bool(line["roaming_enabled"])
    where["mobile_data_usage_exceeded"] = line["data_used_gb"] >= plan["data_limit_gb"] + line["data_refueling_gb"]
    request = where["payment_request"]
    if request is not None and request["paid"]:
        agent_side.set_bill_to_paid(db, request["bill_id"])
        where["payment_request"] = request = None
    if request is None:
        customer = agent_side.get_customer_by_phone(db, phone).dump
        awaiting = agent_side.bills_awaiting_payment(db, customer)
        if awaiting:
            where["payment_request"] = {"bill_id": awaiting[0]["bill_id"], "amount_due": awaiting[0]["total_due"],
                                        "paid": False}


TOOLSETS: dict[str, dict[str, Callable[..., Any]]] = {"assistant": agent_side.TOOLS, "user": user_side.TOOLS}
FUNCTIONS: dict[str, dict[str, Callable[..., Any]]] = {
    "assistant": {**agent_side.TOOLS, **agent_side.ENV_FUNCTIONS}, "user": {**user_side.TOOLS, **user_side.ENV_FUNCTIONS}}


@functools.lru_cache(maxsize=1)
def specs_by_side() -> dict[str, dict[str, ToolSpec]]:
    """Each side's tool schemas by name."""
    return {"assistant": {s.name: s for s in agent_side.tool_specs()}, "user": {s.name: s for s in user_side.tool_specs()}}


def run_call(state: TelecomState, call: ToolCall, requestor: Requestor = "assistant", sync_after: bool = True) -> str:
    """Run one schema-valid tool call of ``requestor`` atomically, then sync (``sync_after``); a
    tool error (:data:`~.tools.TOOL_ERRORS`) changes nothing and propagates (no sync then, as
    upstream)."""
    fn = TOOLSETS[requestor][call.name]
    text = run_atomically(state, lambda txn: to_text(fn(txn, **call.arguments)))
    if sync_after:
        sync(state)
    return text


def apply_calls(state: TelecomState, calls: Iterable[tuple[Requestor, ToolCall]],
                sync_after: bool = True) -> tuple[int, int]:
    """Run ``(requestor, call)`` pairs in order as an episode would (unknown or schema-invalid
    calls and tool errors change nothing; ``sync_after=False``: no sync, as upstream's gold
    replay); return (#errors, #schema-valid agent write calls)."""
    errors = writes = 0
    for requestor, call in calls:
        spec = specs_by_side()[requestor].get(call.name)
        if spec is None or validate_arguments(spec.parameters, call.arguments):
            errors += 1
            continue
        writes += requestor == "assistant" and spec.writes
        try:
            run_call(state, call, requestor, sync_after)
        except TOOL_ERRORS:
            errors += 1
    return errors, writes


def run_env_function(state: TelecomState, call: EnvCall) -> Any:
    """Run an initialisation or assertion function on its side, then sync (upstream
    ``run_env_function_call``); its exceptions propagate."""
    fn = FUNCTIONS[call.env_type].get(call.func_name)
    if fn is None:
        raise ValueError(f"Function {call.func_name} not found in {call.env_type} tools")
    result = fn(state, **call.arguments)
    sync(state)
    return result


def initial_state(task: Task, path: Path) -> TelecomState:
    """A fresh state of the folder's base DBs with the task's ``initialization_actions`` applied
    in order (each followed by a sync) and a final sync, as upstream's ``set_state``."""
    state = TelecomState(base_db(path))
    for call in task.initialization:
        run_env_function(state, call)
    sync(state)
    return state


__all__ = ["FUNCTIONS", "TOOLSETS", "apply_calls", "initial_state", "run_call", "run_env_function", "specs_by_side",
           "sync"]
