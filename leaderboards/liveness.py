"""Which process owns a running run, and whether that process is still alive.

A run row records its owner as ``host:pid:start`` (``start`` = the process's start time in clock
ticks since boot, read from ``/proc``; empty where there is no ``/proc``). A SIGKILLed or
crashed command cannot mark its run failed; the next command that opens the store asks
:func:`owner_alive` and marks the run as dead. The start time guards against a reused pid; a run
owned by another host is never judged (``None``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name, or None (no such process or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses


def _start_ticks(pid: int) -> str:
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""  # field 22 of stat; 3 comes first here


def owner_token(pid: int | None = None) -> str:
    """``host:pid:start`` of this process (or of ``pid`` on this host)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def owner_alive(token: str | None) -> bool | None:
    """True/False for an owner on this host (a zombie counts as dead), None when it cannot be
    told (no token, another host, a malformed token)."""
    if not token:
        return None
    parts = token.split(":")
    if len(parts) < 3 or not parts[-2].isdigit():
        return None
    host, pid, start = ":".join(parts[:-2]), int(parts[-2]), parts[-1]
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's live process
    fields = _proc_stat(pid)
    if fields is None:  # no /proc here (or it just exited): the pid answered, so trust it
        return True
    if fields[0] == "Z":  # exited, not yet reaped by its parent
        return False
    return not start or _start_ticks(pid) == start


__all__ = ["owner_alive", "owner_token"]
