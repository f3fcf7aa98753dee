"""The τ²-retail domain as the shared τ machinery sees it (:class:`~sgcd_envs.tau_common.domain.TauDomain`)."""

from __future__ import annotations

from ..tau_common.domain import TauDomain
from . import data
from .state import RetailState
from .tools import TOOL_ERRORS, WRITE_TOOLS, run_call, tool_specs

FAILING_REFERENCE_ACTIONS = {"2": 1, "3": 1, "4": 1, "12": 1, "13": 1, "21": 3, "35": 1, "37": 1, "38": 1, "39": 1,
                             "46": 2, "47": 2, "54": 1, "55": 1, "64": 1, "67": 2, "68": 1, "105": 1}
"""Reference actions that fail by design, per task (23 in all): look-ups of a mistyped email,
name or id, and three writes the tools refuse (a return to a non-original method, an exchange
of an undelivered order, one over the gift card's balance). Upstream's gold replay skips them."""

RETAIL = TauDomain(label="τ² retail", data=data.SPEC, state_type=RetailState, base_db=data.base_db,
                   tool_specs=tool_specs, run_call=run_call, write_tools=WRITE_TOOLS, tool_errors=TOOL_ERRORS,
                   failing_reference_actions=FAILING_REFERENCE_ACTIONS)
