"""Our side of the AppWorld process boundary: start, talk to, and kill one worker process.

Why JSON lines over pipes rather than AppWorld's own ``appworld serve environment`` HTTP
server (both work with the real engine, see ``research/appworld_fixture.md``): pipes need no
port (no allocation race, nothing bound to 0.0.0.0, which the CLI server does), a dead worker
shows up at once as end-of-file instead of a connection timeout, errors come back typed
instead of as a plain-text HTTP 500, and the worker owns exactly one world for its whole life.
All deadlines are measured here with ``time.monotonic`` (this process's clock is never frozen).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any

WORKER_SCRIPT = Path(__file__).with_name("worker.py")


class WorkerTimeout(Exception):
    """The worker did not answer within the deadline (it was killed)."""


class WorkerDied(Exception):
    """The worker exited or closed its pipe (``returncode`` and a stderr tail attached)."""

    def __init__(self, message: str, returncode: int | None, stderr_tail: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class WorkerReplyError(Exception):
    """The worker answered ``ok: false``; ``kind`` is the worker's error type."""

    def __init__(self, kind: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the worker by pid (its own process group) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


class WorkerProcess:
    """One AppWorld worker process (``worker.py`` under the AppWorld venv's python).

    ``start(timeout)`` waits for the worker's ready line; ``request(op, timeout, **fields)``
    sends one request and returns its ``result`` or raises :class:`WorkerTimeout` (the
    worker is then killed), :class:`WorkerDied` or :class:`WorkerReplyError`.
    """

    def __init__(self, python: Path, root: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.python = Path(python)
        self.root = Path(root)
        self.log_path = Path(log_path)
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.appworld_version: str | None = None
        self._buffer = b""
        self._next_id = 0
        self._finalizer: weakref.finalize | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float) -> None:
        """Launch the worker and wait for ``{"event": "ready"}``; raise on a fatal start."""
        env = {**os.environ, "IPYTHONDIR": str(self.log_path.parent / "ipython"),  # not ~/.ipython
               **self.extra_env, "APPWORLD_ROOT": str(self.root), "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)  # the worker must import only the AppWorld venv's packages
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.python), str(WORKER_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, cwd=str(self.root), env=env, start_new_session=True,
            )
        finally:
            log.close()
        self._buffer = b""
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        message = self._read_message(timeout, "start")
        if message.get("event") == "fatal":
            error = message.get("error", {})
            self.kill()
            raise WorkerReplyError(error.get("type", "fatal"), error.get("message", ""), error.get("traceback", ""))
        if message.get("event") != "ready":
            self.kill()
            raise WorkerDied(f"worker sent {message!r} instead of its ready line", None, self.stderr_tail())
        self.appworld_version = message.get("appworld_version")

    def request(self, op: str, timeout: float, **fields: Any) -> Any:
        """Send one request and wait at most ``timeout`` seconds for its reply."""
        if not self.alive:
            code = self.proc.returncode if self.proc is not None else None
            raise WorkerDied(f"worker is not running (exit code {code})", code, self.stderr_tail())
        self._next_id += 1
        line = json.dumps({"id": self._next_id, "op": op, **fields}) + "\n"
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(line.encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            self.proc.wait(timeout=5) if self.proc is not None else None
            raise WorkerDied(f"could not send {op!r} to the worker ({err})", self.proc.poll(), self.stderr_tail())
        reply = self._read_message(timeout, op)
        if reply.get("id") != self._next_id:
            self.kill()
            raise WorkerDied(f"worker answered request {reply.get('id')} to request {self._next_id}",
                             None, self.stderr_tail())
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise WorkerReplyError(error.get("type", "error"), error.get("message", ""), error.get("traceback", ""))
        return reply.get("result")

    def _read_message(self, timeout: float, what: str) -> dict[str, Any]:
        """Read one JSON line from the worker within ``timeout`` s (monotonic clock)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise WorkerTimeout(f"the AppWorld worker did not answer {what!r} within {timeout:g} s")
                if not selector.select(left):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    code = self.proc.wait(timeout=10)
                    raise WorkerDied(f"the AppWorld worker exited (code {code}) during {what!r}",
                                     code, self.stderr_tail())
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self.kill()
            raise WorkerDied(f"worker wrote a non-JSON line during {what!r}: {line[:200]!r}", None, self.stderr_tail())

    def stderr_tail(self, chars: int = 2000) -> str:
        """The end of the worker's stderr log (AppWorld's warnings, tracebacks)."""
        try:
            return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the worker (by pid) and reap it."""
        if self.proc is not None:
            _kill(self.proc)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to close its world and exit; kill it if it does not within ``timeout`` s."""
        if self.proc is None:
            return
        if self.alive:
            try:
                self.request("shutdown", timeout=timeout)
                self.proc.wait(timeout=timeout)
            except (WorkerTimeout, WorkerDied, WorkerReplyError, subprocess.TimeoutExpired, OSError):
                pass
        _kill(self.proc)
        if self._finalizer is not None:
            self._finalizer.detach()
        self.proc = None
