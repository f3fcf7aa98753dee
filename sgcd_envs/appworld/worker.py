"""The AppWorld worker: one process, one world at a time, driven over JSON lines.

Runs INSIDE the AppWorld venv, started by file path (it imports only the stdlib and
``appworld``, never ``sgcd_envs``)::

    APPWORLD_ROOT=DIR .venv-appworld/bin/python sgcd_envs/appworld/worker.py

Protocol (one JSON object per line). On start the worker writes
``{"event": "ready", "pid": int, "appworld_version": str}`` (or ``{"event": "fatal", "error":
{...}}`` and exits). Then each request ``{"id": int, "op": str, ...}`` gets one reply
``{"id": int, "ok": true, "result": ...}`` or ``{"id": int, "ok": false, "error": {"type": str,
"message": str}}``. Ops:

=============== =========================================== ===========================================
op              request fields                              result
=============== =========================================== ===========================================
``task_ids``    ``split``                                   list of task ids (``appworld.load_task_ids``)
``reset``       ``task_id, experiment_name, timeout_seconds, task summary (instruction, supervisor, ...)
                max_interactions, random_seed``
``execute``     ``code``                                    ``{"output", "completed", "interactions"}``
``evaluate``    --                                          ``TestTracker.to_dict()`` (suppress_errors)
``close``       --                                          ``null`` (closes the world)
``shutdown``    --                                          ``null``, then the process exits
=============== =========================================== ===========================================

The protocol uses private duplicates of the original stdin/stdout; fd 0 is then replaced by
/dev/null and fd 1 by stderr, so nothing the agent's code prints (even with ``os.write(1, ...)``)
can corrupt the protocol. AppWorld freezes this process's clock while a world is open
(freezegun); timeouts are therefore enforced by the parent, which is never frozen.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import traceback
from typing import Any


class WorkerError(Exception):
    """An error reported to the parent as ``{"type": kind, "message": ...}``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _open_protocol_channel() -> tuple[Any, Any]:
    """Keep private copies of stdin/stdout for the protocol; point fds 0/1 elsewhere."""
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(2, 1)
    return proto_in, proto_out


class Worker:
    """Holds at most one AppWorld world (AppWorld allows one live world per process)."""

    def __init__(self) -> None:
        import appworld
        from appworld.common.path_store import path_store

        apps_dir = os.path.join(os.path.dirname(appworld.__file__), "apps", "supervisor")
        if not os.path.isdir(apps_dir):
            raise WorkerError(
                "not_installed",
                "AppWorld's apps are not unpacked in this venv (`appworld install` was not run)",
            )
        self.appworld = appworld
        self.path_store = path_store
        self.world: Any = None

    # -- ops ---------------------------------------------------------------------------
    def op_task_ids(self, split: str) -> list[str]:
        data = self.path_store.data
        if not os.path.isdir(os.path.join(data, "tasks")):
            raise WorkerError("data_missing", f"no AppWorld task folder at {data}/tasks")
        if not os.path.isfile(os.path.join(data, "datasets", f"{split}.txt")):
            raise WorkerError("split_missing", f"no task list {data}/datasets/{split}.txt")
        return list(self.appworld.load_task_ids(split))

    def op_reset(self, task_id: str, experiment_name: str, timeout_seconds: int,
                 max_interactions: int, random_seed: int) -> dict[str, Any]:
        self.op_close()
        tasks_dir = os.path.join(self.path_store.data, "tasks")
        if not os.path.isdir(os.path.join(tasks_dir, task_id)):
            known = sorted(os.listdir(tasks_dir)) if os.path.isdir(tasks_dir) else []
            # this script runs in AppWorld's own venv, where sgcd_common is not installed
            close = difflib.get_close_matches(task_id, known, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise WorkerError("unknown_task",
                              f"Unknown AppWorld task id {task_id!r}: no folder {tasks_dir}/{task_id}.{hint}")
        self.world = self.appworld.AppWorld(
            task_id=task_id, experiment_name=experiment_name, timeout_seconds=timeout_seconds,
            max_interactions=max_interactions, random_seed=random_seed,
        )
        task = self.world.task
        metadata = dict(task.ground_truth.metadata) if task.ground_truth else {}
        return {
            "task_id": task_id,
            "instruction": task.instruction,
            "supervisor": {k: task.supervisor[k] for k in ("first_name", "last_name", "email", "phone_number")},
            "datetime": task.datetime.isoformat(),
            "difficulty": metadata.get("difficulty"),
            "has_ground_truth": task.ground_truth is not None,
            "sgcd_fixture": bool(metadata.get("sgcd_fixture", False)),
            "app_descriptions": dict(task.app_descriptions or {}),
        }

    def _require_world(self) -> Any:
        if self.world is None:
            raise WorkerError("no_world", "no world is open; send a reset first")
        return self.world

    def op_execute(self, code: str) -> dict[str, Any]:
        world = self._require_world()
        output = world.execute(code)
        return {"output": output, "completed": bool(world.task_completed()),
                "interactions": world.num_interactions}

    def op_evaluate(self) -> dict[str, Any]:
        world = self._require_world()
        if not world.task.ground_truth:
            raise WorkerError("no_ground_truth",
                              f"task {world.task_id} has no ground truth, so it cannot be evaluated")
        return world.evaluate(suppress_errors=True).to_dict()

    def op_close(self) -> None:
        if self.world is not None:
            world, self.world = self.world, None
            world.close()

    def handle(self, request: dict[str, Any]) -> Any:
        op = request.pop("op", None)
        request.pop("id", None)
        method = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if method is None:
            raise WorkerError("bad_request", f"unknown op {op!r}")
        return method(**request)


def main() -> int:
    # Run by path: drop our own folder from sys.path so sibling modules never shadow a package.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    proto_in, proto_out = _open_protocol_channel()

    def send(message: dict[str, Any]) -> None:
        proto_out.write(json.dumps(message, default=str) + "\n")
        proto_out.flush()

    try:
        worker = Worker()
    except WorkerError as err:
        send({"event": "fatal", "error": {"type": err.kind, "message": str(err)}})
        return 2
    except Exception as err:  # an import failure: report it, the parent raises a typed error
        send({"event": "fatal", "error": {"type": "import_failed", "message": repr(err),
                                           "traceback": traceback.format_exc()}})
        return 2
    send({"event": "ready", "pid": os.getpid(), "appworld_version": worker.appworld.__version__})
    for line in proto_in:
        if not line.strip():
            continue
        request = json.loads(line)
        request_id = request.get("id")
        if request.get("op") == "shutdown":
            worker.op_close()
            send({"id": request_id, "ok": True, "result": None})
            os._exit(0)  # skip interpreter teardown (IPython/atexit hooks took ~7 s here)
        try:
            result = worker.handle(request)
            send({"id": request_id, "ok": True, "result": result})
        except WorkerError as err:
            send({"id": request_id, "ok": False, "error": {"type": err.kind, "message": str(err)}})
        except Exception as err:  # AppWorld raised: report to the parent, which raises it typed
            send({"id": request_id, "ok": False, "error": {
                "type": "appworld_error", "message": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}})
    worker.op_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
