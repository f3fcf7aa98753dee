"""Copy-on-write airline DB state: one shared, never-mutated base DB per process; each
episode sees it through overlays that deep-copy a record the first time it is touched.

Equivalence with upstream's check. Upstream scores the DB by
``sha256(json.dumps(FlightDB.model_dump(), sort_keys=True, default=str))`` of the agent's and
the gold final states (tau2 ``src/tau2/environment/db.py``). Two states built on the same base
differ only in records present in an overlay, so

    hash(A) == hash(B)  ⇔  canon(A[t][k]) == canon(B[t][k])  ∀ t, ∀ k ∈ touched_A(t) ∪ touched_B(t)

with ``canon(r) = json.dumps(r.model_dump(), sort_keys=True, default=str)`` and a missing key
distinct from any record (up to sha256 collisions). Tools never delete records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, MutableMapping
from typing import Any

from pydantic import BaseModel

TABLES = ("flights", "users", "reservations")


def canonical(record: BaseModel | None) -> str | None:
    """``json.dumps(record.model_dump(), sort_keys=True, default=str)`` (upstream's encoding)."""
    return None if record is None else json.dumps(record.model_dump(), sort_keys=True, default=str)


class CowTable(MutableMapping):
    """A mapping over ``parent`` (a dict or another CowTable) that copies on first access.

    ``t[k]`` deep-copies the parent's record into the overlay (tools may mutate what they
    get); ``values()``/``items()`` yield overlay-or-parent records WITHOUT copying and are
    read-only by contract (the vendored tools only read while iterating).
    """

    __slots__ = ("_parent", "overlay")

    def __init__(self, parent: dict[str, BaseModel] | CowTable) -> None:
        self._parent = parent
        self.overlay: dict[str, BaseModel] = {}

    def peek(self, key: str) -> BaseModel | None:
        """The current record without copying (None if absent)."""
        rec = self.overlay.get(key)
        if rec is not None:
            return rec
        parent = self._parent
        return parent.peek(key) if isinstance(parent, CowTable) else parent.get(key)

    def __getitem__(self, key: str) -> BaseModel:
        rec = self.overlay.get(key)
        if rec is None:
            src = self._parent.peek(key) if isinstance(self._parent, CowTable) else self._parent.get(key)
            if src is None:
                raise KeyError(key)
            rec = self.overlay[key] = src.model_copy(deep=True)
        return rec

    def __setitem__(self, key: str, value: BaseModel) -> None:
        self.overlay[key] = value

    def __delitem__(self, key: str) -> None:
        raise TypeError("airline tools never delete records; deletion is not supported")

    def __contains__(self, key: object) -> bool:
        return key in self.overlay or key in self._parent

    def __iter__(self) -> Iterator[str]:
        yield from self._parent
        for key in self.overlay:
            if key not in self._parent:
                yield key

    def __len__(self) -> int:
        return len(self._parent) + sum(1 for k in self.overlay if k not in self._parent)

    def values(self) -> Iterator[BaseModel]:  # type: ignore[override]
        for key in self:
            yield self.peek(key)  # type: ignore[misc]

    def items(self) -> Iterator[tuple[str, BaseModel]]:  # type: ignore[override]
        for key in self:
            yield key, self.peek(key)  # type: ignore[misc]


class AirlineState:
    """Duck-typed ``FlightDB`` (``.flights``, ``.users``, ``.reservations``) for the vendored
    ``AirlineTools``. ``AirlineState(base_db)`` is a fresh episode state; ``child()`` opens a
    transaction to ``commit`` (keep its writes) or drop (roll back)."""

    __slots__ = ("base", "flights", "users", "reservations")

    def __init__(self, base: Any, parent: AirlineState | None = None) -> None:
        self.base = base
        for t in TABLES:
            setattr(self, t, CowTable(getattr(parent if parent is not None else base, t)))

    def child(self) -> AirlineState:
        return AirlineState(self.base, parent=self)

    def commit(self, child: AirlineState) -> None:
        for t in TABLES:
            getattr(self, t).overlay.update(getattr(child, t).overlay)

    def touched(self, table: str) -> set[str]:
        return set(getattr(self, table).overlay)

    def model_dump(self) -> dict[str, dict[str, Any]]:
        """The whole DB as upstream's ``FlightDB.model_dump()`` would give it."""
        return {t: {k: r.model_dump() for k, r in getattr(self, t).items()} for t in TABLES}


def upstream_hash(db: Any) -> str:
    """Upstream DB hash: ``sha256(json.dumps(db.model_dump(), sort_keys=True, default=str))``.

    Works on a real ``FlightDB`` and on an :class:`AirlineState` (slow: dumps 7 MB)."""
    return hashlib.sha256(json.dumps(db.model_dump(), sort_keys=True, default=str).encode()).hexdigest()


def touched_dumps(state: AirlineState) -> dict[tuple[str, str], str | None]:
    """Canonical dumps of every record in the state's overlays, keyed by (table, key)."""
    return {(t, k): canonical(r) for t in TABLES for k, r in getattr(state, t).overlay.items()}


def states_equal(a: AirlineState, b: AirlineState, b_dumps: dict[tuple[str, str], str | None] | None = None) -> bool:
    """True iff the two states (same base) have the same upstream DB hash (see module doc).

    ``b_dumps`` (from :func:`touched_dumps`) caches ``b``'s side, e.g. for a gold state.
    """
    if a.base is not b.base:
        raise ValueError("states_equal compares states built on the same base DB")
    if b_dumps is None:
        b_dumps = touched_dumps(b)
    for t in TABLES:
        ta, tb = getattr(a, t), getattr(b, t)
        for k in ta.overlay.keys() | tb.overlay.keys():
            ra, rb = ta.peek(k), tb.peek(k)
            if ra is rb:
                continue
            db = b_dumps[(t, k)] if (t, k) in b_dumps else canonical(rb)
            if canonical(ra) != db:
                return False
    return True
