"""``sgcd_envs.caching.once_per_key``: one computation per key, also under concurrent first calls."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sgcd_envs.caching import once_per_key


def test_concurrent_first_calls_compute_once_and_share_the_object() -> None:
    calls: list[str] = []

    @once_per_key
    def build(key: str) -> object:
        calls.append(key)
        time.sleep(0.05)  # long enough for every thread to miss at once without the lock
        return object()

    barrier = threading.Barrier(8)

    def first_call(_: int) -> object:
        barrier.wait()
        return build("a")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(first_call, range(8)))
    assert calls == ["a"] and all(r is results[0] for r in results)
    assert build("b") is not results[0] and calls == ["a", "b"]
    build.cache_clear()
    assert build("a") is not results[0]


def test_a_failed_call_caches_nothing() -> None:
    attempts = []

    @once_per_key
    def flaky(key: int) -> int:
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("transient")
        return key * 2

    with pytest.raises(OSError):
        flaky(3)
    assert flaky(3) == 6 and flaky(3) == 6 and attempts == [3, 3]


def test_keyword_arguments_are_refused() -> None:
    @once_per_key
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="positional"):
        f(x=1)
    assert f.__name__ == "f"
