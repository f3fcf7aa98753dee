"""``AppWorldEnv``: AppWorld (Trivedi et al., ACL 2024) as a Gymnasium env, run in its own process.

The real AppWorld engine (``appworld==0.1.3.post1``) runs in a separate venv and process
(``worker.py``); this module only speaks JSON lines to it (``client.py``), so the agent's code
never runs in our process and AppWorld's frozen clock and ``pydantic<2`` pin never reach us.
"""

from __future__ import annotations

import copy
import re
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium.error import ResetNeeded

from sgcd_envs.appworld.client import WorkerDied, WorkerProcess, WorkerReplyError, WorkerTimeout
from sgcd_envs.appworld.errors import (
    DATA_HINT,
    AppWorldDataError,
    AppWorldHungError,
    AppWorldVenvError,
    AppWorldWorkerError,
    UnknownTaskError,
)
from sgcd_envs.appworld.paths import SPLITS, check_data, check_venv
from sgcd_common import did_you_mean
from sgcd_envs.core import AgentAction, ChatMessages

FIXTURE_SPLIT = "fixture"
"""The split of sgcd-bench's own fixture task (``fixture.py``): a stand-in, never AppWorld numbers."""
FIXTURE_PREFIX = "sgcdfixture"

FAILED = "Execution failed. Traceback:\n"
"""AppWorld's prefix for a failed execution; our own error observations reuse it."""

POLICY = (
    "You act in AppWorld by writing Python code. Each action is either raw Python code or a "
    "message containing a ```python code block (all python blocks are run, in order). The code "
    "runs in a persistent Python shell where `apis.<app>.<api>(**kwargs)` calls an app; "
    "`apis.api_docs.show_app_descriptions()`, `show_api_descriptions(app_name=...)` and "
    "`show_api_doc(app_name=..., api_name=...)` document them. Print what you want to see. "
    "Log in with the passwords from `apis.supervisor.show_account_passwords()`. When done, call "
    "`apis.supervisor.complete_task(answer=...)` (answer=None if the task asks for no answer)."
)
"""Our own short description of the action format (not AppWorld's prompt)."""

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|$)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "ipython"}


def extract_code(action: str | Mapping[str, Any]) -> tuple[str | None, str]:
    """Return ``(code, error)`` from an action; exactly one of them is set (``error`` is ``""``).

    Rules: ``{"code": str}`` is code; ``{"content": str}`` is read like a text. In a text,
    ``<think>`` blocks are dropped; the ```python (or ```py) fenced blocks are joined in order;
    with none, untagged fenced blocks are used; a text without any fence is itself the code.
    """
    if isinstance(action, Mapping):
        if isinstance(action.get("code"), str):
            return action["code"], ""
        if isinstance(action.get("content"), str):
            action = action["content"]
        else:
            return None, f"a dict action needs a str 'code' or 'content', got keys {sorted(map(str, action))}"
    if not isinstance(action, str):
        return None, f"the action must be a str (code or assistant text) or a dict, got {type(action).__name__}"
    text = _THINK.sub("", action)
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    if not blocks:
        return text, ""
    chosen = [b for t, b in blocks if t in _PYTHON_TAGS] or [b for t, b in blocks if not t]
    if not chosen:
        return None, f"no ```python block found (fenced blocks tagged {sorted({t for t, _ in blocks})})"
    return "\n\n".join(block.strip("\n") for block in chosen), ""


def _action_text(action: Any) -> str:
    """The assistant message recorded for an action (its text, or the code of a dict action)."""
    if isinstance(action, str):
        return action
    if isinstance(action, Mapping):
        for key in ("content", "code"):
            if isinstance(action.get(key), str):
                return action[key]
    return repr(action)


class AppWorldEnv(gym.Env):
    """AppWorld tasks as a text Gymnasium env; the real engine runs in a worker process.

    ## Description
    A task asks the agent to do something across 9 simulated apps (Amazon, Gmail, Spotify,
    Venmo, ...) for a supervisor. The agent acts by writing Python code that calls
    ``apis.<app>.<api>(...)``; AppWorld runs it in a persistent shell and returns what it
    printed. The episode ends when the code calls ``apis.supervisor.complete_task(...)``.

    ## Action Space
    :class:`sgcd_envs.core.AgentAction`: raw Python code, or assistant text with ```python
    blocks, or ``{"code": str}`` (see :func:`extract_code`). An action without code becomes an
    error observation and changes nothing.

    ## Observation Space
    :class:`sgcd_envs.core.ChatMessages`: the conversation so far. Reset: one ``user`` message
    with the task and supervisor. Each step appends the ``assistant`` action and a ``user``
    message with AppWorld's output (stdout, ``"Execution successful."`` or
    ``"Execution failed. Traceback: ..."``), cut to ``max_output_chars``.

    ## Rewards
    0 on every step. At the end, AppWorld's own evaluation (state-based unit tests, run by
    ``AppWorld.evaluate``): 1.0 if every test passes, else 0.0. ``info`` carries ``num_tests``,
    ``num_passed``, ``num_failed``, ``pass_fraction``, ``passes`` and ``failures`` (with traces).
    A task counts toward TGC if its reward is 1; SGC groups tasks by ``info["scenario_id"]``.

    ## Episode End
    Termination: the task was completed (``termination="task_completed"``), evaluated.
    Truncation: ``max_steps`` actions (``"max_steps"``; evaluated anyway, as AppWorld's own
    evaluation scores every task at the end), or the worker could not be restored
    (``"worker_lost"``: more than ``max_worker_restarts`` restarts or a restart failed;
    ``"replay_diverged"``: replaying the episode gave different outputs), both reward 0.

    ## Worker failures (the episode's record is kept on our side)
    Each step is bounded by ``call_timeout_s`` (measured here, as AppWorld freezes the worker's
    clock). AppWorld's own ``code_timeout_s`` (SIGALRM) stops ordinary infinite loops and comes
    back as a normal "Execution timed out" observation. If the worker hangs anyway (code stuck
    in C) or dies (crash, SIGKILL), it is killed, a fresh worker loads the same task, and the
    episode's earlier successful code actions are **replayed** into it; their outputs must match
    the recorded ones. The action that hung or crashed is reported as an error observation and
    has no effect; the episode continues. A worker found dead before a step is restored the
    same way. A worker that *dies* while running an action is restored and the action is
    retried once (an outside kill can race the request); a second death or a hang drops it.
    ``info["worker_restarts"]`` counts restarts; :attr:`episode_record` keeps every attempt.

    ## Arguments
    ``split`` (train, dev, test_normal, test_challenge, or ``"fixture"`` for sgcd-bench's own
    fixture task), ``root`` (folder holding AppWorld's ``data/``; default ``$APPWORLD_ROOT``),
    ``venv`` (the AppWorld venv; default ``$SGCD_APPWORLD_VENV`` or ``.venv-appworld``),
    ``max_steps``, ``code_timeout_s``, ``call_timeout_s`` (default ``code_timeout_s + 30``),
    ``startup_timeout_s``, ``max_worker_restarts``, ``max_output_chars``, ``random_seed``
    (AppWorld's), ``experiment_name`` (AppWorld's output folder; default unique per env).

    ## Version History
    * v0: appworld 0.1.3.post1, data 0.1.0.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        split: str = "dev",
        *,
        root: str | Path | None = None,
        venv: str | Path | None = None,
        max_steps: int = 50,
        code_timeout_s: int = 100,
        call_timeout_s: float | None = None,
        startup_timeout_s: float = 180.0,
        max_worker_restarts: int = 2,
        max_output_chars: int = 20_000,
        random_seed: int = 100,
        experiment_name: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        allowed = (*SPLITS, FIXTURE_SPLIT)
        if split not in allowed:
            raise ValueError(f"Unknown AppWorld split {split!r}. Choose one of: {', '.join(allowed)}.{did_you_mean(split, allowed)}")
        for label, value in (("max_steps", max_steps), ("code_timeout_s", code_timeout_s),
                             ("max_output_chars", max_output_chars)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        if not isinstance(max_worker_restarts, int) or max_worker_restarts < 0:
            raise ValueError(f"max_worker_restarts must be an int >= 0, got {max_worker_restarts!r}")
        call_timeout_s = float(code_timeout_s + 30 if call_timeout_s is None else call_timeout_s)
        for label, value in (("call_timeout_s", call_timeout_s), ("startup_timeout_s", startup_timeout_s)):
            if not value > 0:
                raise ValueError(f"{label} must be > 0 seconds, got {value!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.split = split
        self.python = check_venv(venv)  # AppWorldVenvError with the setup command
        self.root = check_data(root, split)  # AppWorldDataError with how to provide data
        self.max_steps = max_steps
        self.code_timeout_s = code_timeout_s
        self.call_timeout_s = call_timeout_s
        self.startup_timeout_s = float(startup_timeout_s)
        self.max_worker_restarts = max_worker_restarts
        self.max_output_chars = max_output_chars
        self.random_seed = random_seed
        self.experiment_name = experiment_name or f"sgcd_{uuid.uuid4().hex[:12]}"
        self.render_mode = render_mode
        self.action_space = AgentAction()
        self.observation_space = ChatMessages(max_messages=2 * max_steps + 2)
        self._log_dir = Path(tempfile.mkdtemp(prefix="sgcd-appworld-"))  # worker stderr log, IPython dir
        weakref.finalize(self, shutil.rmtree, self._log_dir, True)
        self._worker = WorkerProcess(self.python, self.root, self._log_dir / "worker.log")
        self._task_ids: list[str] | None = None
        self._task: dict[str, Any] | None = None
        self._messages: list[dict[str, Any]] = []
        self._record: list[dict[str, Any]] = []
        self._steps = self._restarts = 0
        self._done: str | None = None
        self._worker_error = ""

    # -- worker plumbing -------------------------------------------------------------
    @property
    def worker_pid(self) -> int | None:
        """The pid of the live worker process (``None`` before the first reset)."""
        return self._worker.pid if self._worker.alive else None

    @property
    def episode_record(self) -> list[dict[str, Any]]:
        """This episode's code actions and attempts: ``{"step", "code", "output", "status"}``;
        status is ``ok``, ``hung`` or ``worker_died``. Only ``ok`` ones are replayed after a restart."""
        return copy.deepcopy(self._record)

    def _call(self, op: str, timeout: float, **fields: Any) -> Any:
        """A worker request whose failures outside a step become typed errors (reset, listing)."""
        try:
            if not self._worker.alive:
                self._worker.start(self.startup_timeout_s)
            return self._worker.request(op, timeout, **fields)
        except WorkerTimeout as err:
            raise AppWorldHungError(f"The AppWorld world hung: {err}; the worker was killed. If the machine is just "
                                    f"slow, raise startup_timeout_s (now {self.startup_timeout_s:g} s).") from None
        except WorkerDied as err:
            raise AppWorldWorkerError(f"The AppWorld worker died: {err}. Its stderr ends with: "
                                      f"{err.stderr_tail[-600:]!r}") from None
        except WorkerReplyError as err:
            if err.kind == "unknown_task":
                raise UnknownTaskError(str(err)) from None
            if err.kind in ("data_missing", "split_missing"):
                raise AppWorldDataError(f"{err} (root {self.root}). {DATA_HINT}") from None
            if err.kind in ("not_installed", "import_failed"):
                raise AppWorldVenvError(f"The AppWorld venv ({self.python}) cannot run the worker: {err}. "
                                        "Recreate it with: sgcd-bench appworld setup") from None
            raise AppWorldWorkerError(f"AppWorld failed in {op!r}: {err}") from None

    def task_ids(self) -> list[str]:
        """The split's task ids, from AppWorld's own ``load_task_ids`` in the worker."""
        if self._task_ids is None:
            self._task_ids = list(self._call("task_ids", self.startup_timeout_s, split=self.split))
        return list(self._task_ids)

    def _load_world(self, task_id: str) -> dict[str, Any]:
        return self._call("reset", self.startup_timeout_s, task_id=task_id, experiment_name=self.experiment_name,
                          timeout_seconds=self.code_timeout_s, max_interactions=self.max_steps + 1,
                          random_seed=self.random_seed)

    def _restore_worker(self) -> str | None:
        """Kill the worker, start a fresh one on the same task and replay the ``ok`` actions.

        Returns ``None`` when restored, else the termination reason (``worker_lost``,
        ``replay_diverged``) with the details kept in ``self._worker_error``."""
        self._worker.kill()
        self._restarts += 1
        if self._restarts > self.max_worker_restarts:
            self._worker_error = f"more than max_worker_restarts={self.max_worker_restarts} worker restarts"
            return "worker_lost"
        assert self._task is not None
        try:
            self._load_world(self._task["task_id"])
            for entry in self._record:
                if entry["status"] != "ok":
                    continue
                result = self._worker.request("execute", self.call_timeout_s, code=entry["code"])
                if result["output"] != entry["output"]:
                    self._worker_error = (f"replaying step {entry['step']} gave a different output "
                                          f"({result['output'][:200]!r} vs {entry['output'][:200]!r})")
                    return "replay_diverged"
        except (AppWorldHungError, AppWorldWorkerError, AppWorldDataError, UnknownTaskError,
                WorkerTimeout, WorkerDied, WorkerReplyError) as err:
            self._worker.kill()
            self._worker_error = f"restarting the worker failed: {err}"
            return "worker_lost"
        return None

    # -- gymnasium API -------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Load a task (``options["task_id"]``, else one drawn from the split with ``seed``)."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"task_id"}
        if unknown:
            raise ValueError(f"Unknown reset option(s) {sorted(unknown)}; allowed: ['task_id']")
        ids = self.task_ids()
        if not ids:
            raise AppWorldDataError(f"Split '{self.split}' under {self.root} lists no tasks. {DATA_HINT}")
        task_id = options.get("task_id")
        if task_id is None:
            task_id = ids[int(self.np_random.integers(0, len(ids)))]
        elif task_id not in ids:
            raise UnknownTaskError(f"Unknown task id {task_id!r} for AppWorld split '{self.split}' ({len(ids)} tasks)."
                                   + did_you_mean(task_id, ids, n=3, cutoff=0.5))
        self._task = self._load_world(task_id)
        self._messages, self._record = [], []
        self._steps = self._restarts = 0
        self._done = None
        self._worker_error = ""
        sup = self._task["supervisor"]
        self._messages.append({"role": "user", "content": (
            f"{self._task['instruction']}\n\nSupervisor: {sup['first_name']} {sup['last_name']} "
            f"({sup['email']}, phone {sup['phone_number']}). Current date and time: {self._task['datetime']}.")})
        return self._observation(), self._base_info() | {
            "instruction": self._task["instruction"], "supervisor": dict(sup), "datetime": self._task["datetime"],
            "app_descriptions": self._task["app_descriptions"], "policy": POLICY, "tools": [],
            "max_steps": self.max_steps, "worker_pid": self.worker_pid,
        }

    def step(self, action: str | Mapping[str, Any]):
        if self._task is None:
            raise ResetNeeded("Cannot call step() before reset().")
        if self._done is not None:
            raise ResetNeeded(f"The episode has ended ({self._done}); call reset() before step().")
        self._steps += 1
        self._messages.append({"role": "assistant", "content": _action_text(action)})
        code, problem = extract_code(action)
        termination = truncation = None
        completed = False
        if code is None:
            output = FAILED + f"sgcd-bench: {problem}. Nothing was run."
        else:
            output, completed, truncation = self._execute(code)
        self._messages.append({"role": "user", "content": self._cut(output)})
        if truncation is None:
            if completed:
                termination = "task_completed"
            elif self._steps >= self.max_steps:
                truncation = "max_steps"
        info: dict[str, Any] = {"step": self._steps, "worker_restarts": self._restarts}
        reward = 0.0
        reason = termination or truncation
        if reason is not None:
            self._done = reason
            info.update(self._finish(reason))
            reward = info["reward"]
        return self._observation(), reward, termination is not None, truncation is not None, info

    def _execute(self, code: str) -> tuple[str, bool, str | None]:
        """Run one code action in the worker; returns (output, completed, truncation reason).

        A worker that dies while running the action is restored and the action is retried once
        (the death may have had nothing to do with the code, e.g. an outside SIGKILL racing the
        request); a second death, or a hang, is reported to the agent and the action is dropped.
        """
        if not self._worker.alive:  # died between steps: restore before running this action
            failed = self._restore_worker()
            if failed:
                return self._lost_message(failed), False, failed
        for attempt in (1, 2):
            entry = {"step": self._steps, "code": code, "output": "", "status": "ok"}
            try:
                result = self._worker.request("execute", self.call_timeout_s, code=code)
            except (WorkerTimeout, WorkerDied) as err:
                hung = isinstance(err, WorkerTimeout)
                entry["status"] = "hung" if hung else "worker_died"
                entry["output"] = what = (
                    f"the AppWorld worker did not answer within {self.call_timeout_s:g} s (a hung world; AppWorld's "
                    f"own {self.code_timeout_s} s limit did not stop it) and was killed" if hung else
                    f"the AppWorld worker process died (exit code {err.returncode}) while running this code")
                self._record.append(entry)
                failed = self._restore_worker()
                if failed:
                    return self._lost_message(failed), False, failed
                if not hung and attempt == 1:
                    continue  # retry once in the restored world
                replayed = sum(e["status"] == "ok" for e in self._record)
                return (FAILED + f"sgcd-bench: {what}. The world was rebuilt by replaying your {replayed} earlier "
                        "code action(s); this code had no effect."), False, None
            except WorkerReplyError as err:
                raise AppWorldWorkerError(f"AppWorld failed while executing code: {err}\n{err.detail[-1500:]}") from None
            entry["output"] = result["output"]
            self._record.append(entry)
            return result["output"], bool(result["completed"]), None
        raise AssertionError("unreachable")

    def _lost_message(self, reason: str) -> str:
        return FAILED + f"sgcd-bench: the AppWorld worker could not be restored ({reason}: {self._worker_error}); the episode ends."

    def _finish(self, reason: str) -> dict[str, Any]:
        """End-of-episode info: AppWorld's evaluation unless the worker was lost (reward 0)."""
        info = self._base_info() | {"termination": reason, "code_actions": len(self._record),
                                    "worker_restarts": self._restarts}
        if reason in ("worker_lost", "replay_diverged"):
            return info | {"reward": 0.0, "success": False, "evaluated": False, "worker_error": self._worker_error}
        try:
            result = self._worker.request("evaluate", self.call_timeout_s)
        except (WorkerTimeout, WorkerDied, WorkerReplyError) as err:
            return info | {"reward": 0.0, "success": False, "evaluated": False, "termination": "worker_lost",
                           "worker_error": f"evaluation failed: {err}"}
        passes, failures = result.get("passes", []), result.get("failures", [])
        total = int(result.get("num_tests", len(passes) + len(failures)))
        success = bool(result.get("success"))
        return info | {
            "reward": 1.0 if success else 0.0, "success": success, "evaluated": True,
            "num_tests": total, "num_passed": len(passes), "num_failed": len(failures),
            "pass_fraction": len(passes) / total if total else 0.0,
            "passes": passes, "failures": failures,
        }

    def _base_info(self) -> dict[str, Any]:
        assert self._task is not None
        difficulty = self._task.get("difficulty")
        task_id = self._task["task_id"]
        return {
            "task_id": task_id, "split": self.split, "scenario_id": task_id.rsplit("_", 1)[0],
            "difficulty": difficulty, "category": f"difficulty_{difficulty}" if difficulty else "unknown",
            "fixture": bool(self._task.get("sgcd_fixture")) or task_id.startswith(FIXTURE_PREFIX),
        }

    def _cut(self, text: str) -> str:
        limit = self.max_output_chars
        return text if len(text) <= limit else text[:limit] + f"\n...[truncated {len(text) - limit} of {len(text)} characters]"

    def _observation(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._messages)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "\n".join(f"[{m['role']}] {m['content']}" for m in self._messages)

    def close(self) -> None:
        """Shut the worker down (SIGKILL if it does not exit)."""
        self._worker.close()
        shutil.rmtree(self._log_dir, ignore_errors=True)
        super().close()


__all__ = ["AppWorldEnv", "FIXTURE_SPLIT", "POLICY", "extract_code"]
