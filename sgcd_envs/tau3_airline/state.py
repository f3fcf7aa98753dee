"""Copy-on-write airline DB state: :class:`AirlineState`, a duck-typed upstream ``FlightDB``
over the shared copy-on-write machinery (:mod:`sgcd_envs.tau_common.state`, whose doc shows
why comparing touched records equals comparing upstream's full-DB hashes)."""

from __future__ import annotations

from ..tau_common.state import CowTable, TauState, canonical, states_equal, touched_dumps, upstream_hash

TABLES = ("flights", "users", "reservations")


class AirlineState(TauState):
    """Duck-typed ``FlightDB`` (``.flights``, ``.users``, ``.reservations``) for the vendored
    ``AirlineTools``. ``AirlineState(base_db)`` is a fresh episode state; ``child()`` opens a
    transaction to ``commit`` (keep its writes) or drop (roll back)."""

    __slots__ = TABLES
    TABLES = TABLES


__all__ = ["TABLES", "AirlineState", "CowTable", "canonical", "states_equal", "touched_dumps", "upstream_hash"]
