"""Ctrl-C and SIGTERM in a training command: stop promptly, but never inside an update.

:func:`terminate_as_interrupt` turns SIGTERM (``kill``, a job scheduler's preemption) into the
same ``KeyboardInterrupt`` as Ctrl-C, so one ``except`` writes the checkpoint either way.
:func:`deferred_interrupts` holds both signals back while the model, optimizer and loop
position change together (the optimizer step), then raises the held one, so an interrupted
trainer is always at a step boundary. Both only act in the main thread (Python delivers
signals there); elsewhere they change nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises ``KeyboardInterrupt`` (as SIGINT does)."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block are held and raised as
    ``KeyboardInterrupt`` when it ends (an exception of the block's own wins)."""
    if not _main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    for sig in _SIGNALS:
        previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise KeyboardInterrupt(f"signal {signal.Signals(held[0]).name} (held until the update finished)")


__all__ = ["deferred_interrupts", "terminate_as_interrupt"]
