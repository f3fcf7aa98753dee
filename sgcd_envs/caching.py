"""A per-process cache that computes each key exactly once, also under concurrent first calls.

``functools.lru_cache`` holds no lock while the function runs, so threads that miss at the same
time each compute and each get a *different* object. That is harmless for plain values, but not
for objects whose identity matters, such as τ³-airline's shared base DB (states built on two
different base DBs cannot be compared). verl's agent loop runs env calls in executor threads, so
concurrent first calls do happen.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class OncePerKey(Generic[P, R]):
    """``fn`` memoised on its positional arguments; each key is computed once, under its own lock.

    The first caller of a key computes it while later callers of that key wait, then all get the
    identical object; different keys compute in parallel. A call that raises caches nothing (the
    next call retries). Unbounded: an evicted key would be recomputed into a new object, which
    is what this cache exists to prevent, so use it for few keys (data folders, tasks).
    Use :func:`once_per_key` as the decorator.
    """

    def __init__(self, fn: Callable[P, R]) -> None:
        self._fn = fn
        self._values: dict[tuple[Hashable, ...], R] = {}
        self._key_locks: dict[tuple[Hashable, ...], threading.Lock] = {}
        self._guard = threading.Lock()  # guards _key_locks
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs:
            raise TypeError(f"{self._fn.__qualname__} is cached on positional arguments only")
        try:
            return self._values[args]
        except KeyError:
            pass
        with self._guard:
            lock = self._key_locks.setdefault(args, threading.Lock())
        with lock:
            if args not in self._values:
                self._values[args] = self._fn(*args)
            return self._values[args]

    def cache_clear(self) -> None:
        """Forget every computed value (later calls compute new objects)."""
        with self._guard:
            self._values.clear()
            self._key_locks.clear()


def once_per_key(fn: Callable[P, R]) -> OncePerKey[P, R]:
    """Decorator: cache ``fn`` per positional-argument key, computing each key once (see :class:`OncePerKey`)."""
    return OncePerKey(fn)
