"""Copy-on-write telecom state: the agent's five tables seen through the shared overlays
(:mod:`sgcd_envs.tau_common.state`, whose doc shows why comparing touched records equals comparing
upstream's full-DB hashes) plus the user's phone and surroundings (``user``, upstream's
``TelecomUserDB``), a small document (about 60 values) that each state holds as its own copy.

``child()`` / ``commit()`` make a call atomic on both sides: the child copies the user document
and a commit takes the child's over.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ..tau_common.state import TauState, states_equal
from .data import TABLES, TelecomDB


class TelecomState(TauState):
    """The telecom DBs for one episode or transaction: ``.plans``, ``.customers``, ``.lines``,
    ``.bills``, ``.devices`` (copy-on-write tables) and ``.user`` (``{"device", "surroundings"}``,
    this state's own copy)."""

    __slots__ = (*TABLES, "user")
    TABLES = TABLES

    def __init__(self, base: TelecomDB, parent: TelecomState | None = None) -> None:
        super().__init__(base, parent)
        self.user: dict[str, Any] = copy.deepcopy(parent.user if parent is not None else base.user)

    @property
    def device(self) -> dict[str, Any]:
        return self.user["device"]

    @property
    def surroundings(self) -> dict[str, Any]:
        return self.user["surroundings"]

    def commit(self, child: TauState) -> None:
        super().commit(child)
        assert isinstance(child, TelecomState)
        self.user = child.user

    def user_dump(self) -> dict[str, Any]:
        """The user DB as upstream's ``TelecomUserDB.model_dump()`` gives it."""
        return self.user


def user_canonical(state: TelecomState) -> str:
    """The user DB in upstream's hashing encoding (``json.dumps(..., sort_keys=True, default=str)``)."""
    return json.dumps(state.user, sort_keys=True, default=str)


def telecom_states_equal(a: TelecomState, b: TelecomState) -> bool:
    """True iff both the agent DBs and the user DBs have equal upstream hashes."""
    return states_equal(a, b) and user_canonical(a) == user_canonical(b)
