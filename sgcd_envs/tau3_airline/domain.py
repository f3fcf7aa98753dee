"""The τ³-airline domain as the shared τ machinery sees it (:class:`~sgcd_envs.tau_common.domain.TauDomain`)."""

from __future__ import annotations

from ..tau_common.domain import TauDomain
from . import data
from .state import AirlineState
from .tools import TOOL_ERRORS, WRITE_TOOLS, run_call, tool_specs

AIRLINE = TauDomain(label="τ³ airline", data=data.SPEC, state_type=AirlineState, base_db=data.base_db,
                    tool_specs=tool_specs, run_call=run_call, write_tools=WRITE_TOOLS, tool_errors=TOOL_ERRORS)
