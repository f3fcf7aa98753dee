"""Copy-on-write retail DB state: :class:`RetailState` over the shared machinery
(:mod:`sgcd_envs.tau_common.state`, whose doc shows why comparing touched records equals
comparing upstream's full-DB hashes). Records are plain JSON dicts (upstream's ``model_dump()``
form), deep-copied on first write access."""

from __future__ import annotations

from ..tau_common.state import TauState
from .data import TABLES


class RetailState(TauState):
    """The retail DB (``.products``, ``.users``, ``.orders``) for one episode or transaction."""

    __slots__ = TABLES
    TABLES = TABLES
