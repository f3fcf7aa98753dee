"""Copy-on-write τ DB state: one shared, never-mutated base DB per process; each episode sees
it through overlays that deep-copy a record the first time it is touched.

Records are pydantic models (airline: upstream's vendored data model) or plain JSON dicts
already in upstream's ``model_dump()`` form (retail); :func:`dump` and :func:`copy_record`
handle both.

Equivalence with upstream's check. Upstream scores the DB by
``sha256(json.dumps(db.model_dump(), sort_keys=True, default=str))`` of the agent's and the gold
final states (tau2 ``environment/db.py``, ``utils/pydantic_utils.py``). Two states built on the
same base differ only in records present in an overlay, so

    hash(A) == hash(B)  ⇔  canon(A[t][k]) == canon(B[t][k])  ∀ t, ∀ k ∈ touched_A(t) ∪ touched_B(t)

with ``canon(r) = json.dumps(dump(r), sort_keys=True, default=str)`` and a missing key distinct
from any record (up to sha256 collisions). Tools never delete records.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, MutableMapping
from typing import Any, ClassVar

from pydantic import BaseModel


def dump(record: Any) -> Any:
    """A record as upstream's ``model_dump()`` gives it (a plain record is already that)."""
    return record.model_dump() if isinstance(record, BaseModel) else record


def copy_record(record: Any) -> Any:
    """A deep copy that tools may mutate."""
    return record.model_copy(deep=True) if isinstance(record, BaseModel) else copy.deepcopy(record)


def canonical(record: Any | None) -> str | None:
    """``json.dumps(dump(record), sort_keys=True, default=str)`` (upstream's encoding)."""
    return None if record is None else json.dumps(dump(record), sort_keys=True, default=str)


class CowTable(MutableMapping):
    """A mapping over ``parent`` (a dict or another CowTable) that copies on first access.

    ``t[k]`` deep-copies the parent's record into the overlay (tools may mutate what they
    get); ``values()``/``items()``/:meth:`peek` yield overlay-or-parent records WITHOUT copying
    and are read-only by contract (the tools only read while iterating).
    """

    __slots__ = ("_parent", "overlay")

    def __init__(self, parent: dict[str, Any] | CowTable) -> None:
        self._parent = parent
        self.overlay: dict[str, Any] = {}

    def peek(self, key: str) -> Any | None:
        """The current record without copying (None if absent)."""
        rec = self.overlay.get(key)
        if rec is not None:
            return rec
        parent = self._parent
        return parent.peek(key) if isinstance(parent, CowTable) else parent.get(key)

    def __getitem__(self, key: str) -> Any:
        rec = self.overlay.get(key)
        if rec is None:
            src = self._parent.peek(key) if isinstance(self._parent, CowTable) else self._parent.get(key)
            if src is None:
                raise KeyError(key)
            rec = self.overlay[key] = copy_record(src)
        return rec

    def __setitem__(self, key: str, value: Any) -> None:
        self.overlay[key] = value

    def __delitem__(self, key: str) -> None:
        raise TypeError("τ tools never delete records; deletion is not supported")

    def __contains__(self, key: object) -> bool:
        return key in self.overlay or key in self._parent

    def __iter__(self) -> Iterator[str]:
        yield from self._parent
        for key in self.overlay:
            if key not in self._parent:
                yield key

    def __len__(self) -> int:
        return len(self._parent) + sum(1 for k in self.overlay if k not in self._parent)

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        for key in self:
            yield self.peek(key)

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        for key in self:
            yield key, self.peek(key)


class TauState:
    """A domain DB seen through one :class:`CowTable` per table (attributes named as upstream's
    DB fields, so tools written for the DB run on it). ``State(base_db)`` is a fresh episode
    state; ``child()`` opens a transaction to ``commit`` (keep its writes) or drop (roll back).
    Subclasses set ``TABLES`` and ``__slots__ = TABLES``."""

    __slots__ = ("base",)
    TABLES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, base: Any, parent: TauState | None = None) -> None:
        self.base = base
        source = parent if parent is not None else base
        for t in self.TABLES:
            setattr(self, t, CowTable(getattr(source, t)))

    def table(self, name: str) -> CowTable:
        return getattr(self, name)

    def child(self) -> TauState:
        return type(self)(self.base, parent=self)

    def commit(self, child: TauState) -> None:
        for t in self.TABLES:
            self.table(t).overlay.update(child.table(t).overlay)

    def touched(self, table: str) -> set[str]:
        return set(self.table(table).overlay)

    def model_dump(self) -> dict[str, dict[str, Any]]:
        """The whole DB as upstream's ``model_dump()`` of it would give it."""
        return {t: {k: dump(r) for k, r in self.table(t).items()} for t in self.TABLES}


def upstream_hash(db: Any) -> str:
    """Upstream DB hash: ``sha256(json.dumps(db.model_dump(), sort_keys=True, default=str))``.

    Works on an upstream DB model and on a :class:`TauState` (slow: dumps the whole DB)."""
    return hashlib.sha256(json.dumps(db.model_dump(), sort_keys=True, default=str).encode()).hexdigest()


def touched_dumps(state: TauState) -> dict[tuple[str, str], str | None]:
    """Canonical dumps of every record in the state's overlays, keyed by (table, key)."""
    return {(t, k): canonical(r) for t in state.TABLES for k, r in state.table(t).overlay.items()}


def changed_records(state: TauState) -> frozenset[tuple[str, str, str | None]]:
    """Records whose content differs from the base DB, as (table, key, canonical dump)."""
    out = set()
    for t in state.TABLES:
        base = getattr(state.base, t)
        for k, r in state.table(t).overlay.items():
            dumped = canonical(r)
            if dumped != canonical(base.get(k)):
                out.add((t, k, dumped))
    return frozenset(out)


def states_equal(a: TauState, b: TauState, b_dumps: dict[tuple[str, str], str | None] | None = None) -> bool:
    """True iff the two states (same base) have the same upstream DB hash (see module doc).

    ``b_dumps`` (from :func:`touched_dumps`) caches ``b``'s side, e.g. for a gold state.
    """
    if a.base is not b.base:
        raise ValueError("states_equal compares states built on the same base DB")
    if b_dumps is None:
        b_dumps = touched_dumps(b)
    for t in a.TABLES:
        ta, tb = a.table(t), b.table(t)
        for k in ta.overlay.keys() | tb.overlay.keys():
            ra, rb = ta.peek(k), tb.peek(k)
            if ra is rb:
                continue
            db = b_dumps[(t, k)] if (t, k) in b_dumps else canonical(rb)
            if canonical(ra) != db:
                return False
    return True
