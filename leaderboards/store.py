"""SQLite result store: runs, evaluations and their episodes.

One database file holds every run of every method and environment. Guarantees:

* **WAL journal, one transaction per evaluation.** :meth:`ResultStore.record_evaluation`
  writes the evaluation row and all of its episodes inside a single ``BEGIN IMMEDIATE …
  COMMIT``. A crash, ``SIGKILL`` or Ctrl-C at any point leaves every committed evaluation
  intact and no partial one (SQLite rolls an uncommitted WAL tail back on the next open).
  Each evaluation row stores ``n_episodes`` so readers can check completeness.
* **Several processes at once.** WAL lets readers run while a writer commits. Every write
  (run, evaluation, training step, status, flag, schema) waits for another connection's lock in attempts of
  ``timeout_s`` (default :data:`BUSY_TIMEOUT_MS`) with backoff between them, for at most the
  write budget: ``write_budget_s=``, else ``$SGCD_STORE_WRITE_BUDGET_S``, else
  :data:`WRITE_BUDGET_S` (5 minutes). It logs one warning when it starts waiting.
* **A finished result is never lost to a lock.** When the store stays locked past the budget,
  an evaluation, a training step, a status change or a flag is kept in a sidecar file,
  ``<store>.pending/<time>-<uuid>.json`` (written atomically: temp file, fsync, rename), and
  :meth:`ResultStore.record_evaluation` returns ``None``. Later writes queue behind it (so a stuck
  lock costs the budget once). The next open of the store, by any command, merges the sidecars in
  order (:attr:`ResultStore.merged_on_open`), each in one transaction that also records its id in
  ``applied_writes``, so a sidecar merged twice adds nothing; the file is deleted only after the
  merge committed. A sidecar that cannot be merged is renamed ``*.rejected``, never deleted.
  ``start_run`` has nothing finished to keep: past the budget it raises :class:`StoreBusyError`.
* **A damaged file is refused, untouched.** Opening runs ``PRAGMA quick_check`` through a
  read-only connection (about 5 ms per MB); garbage, a truncated file or a non-SQLite file raises
  :class:`StoreCorruptError` with one line: the path, what is wrong, how to recover.
* **Versioned schema.** ``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`. Opening a file
  written by a newer sgcd-bench raises :class:`SchemaVersionError` instead of guessing; an older
  one is migrated in place, in one transaction (v1 → v2: ``applied_writes``; v2 → v3: the typed
  :class:`StandIns` of each run, derived once from its labels; v3 → v4: ``train_steps``, empty for
  the runs stored before; v4 → v5: ``runs.owner``; v5 → v6: the probe columns of
  ``train_steps``, empty for the steps stored before).
* **Dead runs are marked.** A run records its owner process (``host:pid:start``,
  :mod:`leaderboards.liveness`). A command that was SIGKILLed or lost its machine cannot close its
  run; the next open of the store finds a ``running`` run whose owner on this host is gone, marks
  it ``failed`` with the flag ``died`` and keeps every finished step and evaluation
  (:attr:`ResultStore.dead_on_open`).
* **Resumable runs.** :meth:`ResultStore.reopen_run` sets a run back to ``running`` under the
  resuming process; :meth:`ResultStore.drop_steps_after` forgets the steps past the checkpoint a
  run resumes from.
* **Learning curves.** :meth:`ResultStore.record_step` stores one :class:`TrainStep` per training
  step in its own transaction, so a run killed mid-training keeps every finished step
  (:meth:`ResultStore.steps` reads them back).

Example::

    store = ResultStore("results.sqlite")
    run_id = store.start_run(method="sgcd", env="sgcd_envs/Tau3Airline-v0", split="test",
                             model="SmolLM2-135M-Instruct", user_simulator="scripted-stand-in",
                             stand_ins=StandIns(user=True), seed=0, config={"lr": 1e-6})
    store.record_evaluation(run_id, step=10, episodes=[EpisodeResult("2", 0, "no_write", 1.0)],
                            wall_s=12.5, tokens=3_000)
    store.finish_run(run_id, "finished")
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypeVar

from sgcd_common import did_you_mean

from .liveness import owner_alive, owner_token

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CATEGORIES",
    "DIED_FLAG",
    "DeadRun",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "WRITE_BUDGET_ENV",
    "WRITE_BUDGET_S",
    "EpisodeResult",
    "EvaluationRecord",
    "PendingMerge",
    "ResultStore",
    "RunRecord",
    "SchemaVersionError",
    "StandIns",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "TrainStep",
    "git_commit",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 6
"""Version written to ``PRAGMA user_version``; bump it with a migration on any schema change."""

RUN_STATUSES = ("running", "finished", "failed")
CATEGORIES = ("action", "no_write")
"""Episode categories: a task whose reference actions contain a write tool is an ``action``
task, otherwise ``no_write``. ``None`` = not applicable (e.g. AppWorld)."""

BUSY_TIMEOUT_MS = 5_000
"""How long one attempt waits inside SQLite for another connection's lock. Short, so Ctrl-C is
seen between attempts; the write budget bounds the total."""

WRITE_BUDGET_S = 300.0
"""Default total time a write keeps retrying past a busy lock before it gives up (a result is
then kept in a sidecar file)."""

WRITE_BUDGET_ENV = "SGCD_STORE_WRITE_BUDGET_S"
"""Environment variable that overrides :data:`WRITE_BUDGET_S` (seconds, >= 0)."""

PENDING_SUFFIX = ".pending"
"""The sidecar folder of ``results.sqlite`` is ``results.sqlite.pending``."""

PENDING_FORMAT = "sgcd-bench pending write"
_PENDING_KINDS = ("evaluation", "step", "finish_run", "flag_run")
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.05, 2.0
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
_CORRUPT_CODES = {11: "a damaged or truncated SQLite file", 26: "not an SQLite database"}

Status = Literal["running", "finished", "failed"]


class StoreError(ValueError):
    """An error of the result store: bad input (unknown field, unknown run, bad value), or
    (the subclasses) a store that stayed locked or is damaged."""


class StoreBusyError(StoreError):
    """Another connection held the store's write lock for the whole write budget."""


class StoreCorruptError(StoreError):
    """The store file is not a readable SQLite database (garbage, truncated, damaged); the file
    was left untouched."""


class SchemaVersionError(RuntimeError):
    """The database file was written with a schema this version cannot read."""



def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _primary_code(err: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error (extended codes folded), if Python exposes it."""
    code = getattr(err, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_busy(err: sqlite3.Error) -> bool:
    """Whether ``err`` means another connection holds a lock (worth retrying)."""
    code = _primary_code(err)
    if code is not None:
        return code in _BUSY_CODES
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _backoff_s(attempt: int) -> float:
    """Pause before retry ``attempt`` (0-based): doubling from 50 ms to 2 s, with jitter so
    several waiting processes do not retry in lockstep."""
    return min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2**attempt) * random.uniform(0.5, 1.0)


def _check_seconds(value: Any, name: str, shown: Any) -> float:
    """``value`` as seconds (a finite number >= 0), else a one-line :class:`StoreError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value >= 0
    ):
        raise StoreError(f"{name} must be a number of seconds >= 0, got {shown!r}")
    return float(value)


def _write_budget(value: float | None) -> float:
    """The retry budget: ``value``, else ``$SGCD_STORE_WRITE_BUDGET_S``, else the default."""
    if value is not None:
        return _check_seconds(value, "write_budget_s", value)
    raw = os.environ.get(WRITE_BUDGET_ENV, "").strip()
    if not raw:
        return WRITE_BUDGET_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    return _check_seconds(seconds, WRITE_BUDGET_ENV, raw)


# --------------------------------------------------------------------------- damaged files


def _corrupt_message(path: Path, what: str) -> str:
    """One line: the path, what is wrong, how to recover."""
    return (
        f"{path}: {what}, so it cannot be read as a result store; the file was left untouched. "
        f"To recover, move it away together with any {path.name}-wal and {path.name}-shm beside it "
        f"(e.g. `mv {path} {path}.corrupt`) and the next run starts a new store, or restore it "
        "from a backup."
    )


def _first_problem(report: str) -> str:
    """The first finding of a ``PRAGMA quick_check`` report, on one line."""
    lines = [ln.strip() for ln in report.splitlines() if ln.strip() and not ln.startswith("***")]
    return lines[0] if lines else report.strip()


def _check_readable(path: Path, timeout_s: float) -> None:
    """Raise :class:`StoreCorruptError` if the file at ``path`` exists but is not a sound SQLite
    database. It reads through a read-only connection, so nothing (no checkpoint, no journal
    change) can write to the file. Anything but damage (no file yet, a lock, permissions) is
    left to the real connection to report."""
    try:
        if path.stat().st_size == 0:
            return  # a new store
    except OSError:
        return
    try:
        con = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error:
        return
    try:
        rows = [str(r[0]) for r in con.execute("PRAGMA quick_check").fetchmany(2)]
    except sqlite3.DatabaseError as err:
        what = _CORRUPT_CODES.get(_primary_code(err) or -1)
        if what is None:
            return
        raise StoreCorruptError(_corrupt_message(path, f"{what} ({err})")) from None
    finally:
        con.close()
    if rows != ["ok"]:
        problem = _first_problem(rows[0]) if rows else "no report"
        raise StoreCorruptError(_corrupt_message(path, f"a damaged or truncated SQLite file ({problem})"))


# --------------------------------------------------------------------------- sidecar files


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves either nothing or the whole file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _read_pending(file: Path) -> dict[str, Any]:
    """A sidecar's content; ``ValueError`` when it is not one this version wrote."""
    doc = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != PENDING_FORMAT:
        raise ValueError("not an sgcd-bench pending result")
    if doc.get("kind") not in _PENDING_KINDS or not isinstance(doc.get("write_id"), str) \
            or not isinstance(doc.get("args"), dict):
        raise ValueError(f"unknown kind {doc.get('kind')!r} or missing write_id / args")
    return doc


def git_commit(path: str | PathLike[str] = ".") -> str | None:
    """The ``HEAD`` commit of the git work tree at ``path``, or ``None`` outside one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class EpisodeResult:
    """Outcome of one episode (one trial of one task), as the env reports it at termination.

    Attributes:
        task_id: the env's task id (AppWorld ids look like ``<scenario>_<n>``).
        trial: trial index of this task within the evaluation (0-based).
        category: ``"action"``, ``"no_write"`` or ``None`` when the env has no such split.
        reward: verifier reward in [0, 1]; an episode *passes* when reward == 1.
        db_match / communicate_match: the τ³ reward components (``None`` if not applicable).
        write_calls: number of write-tool calls the agent made (attempted).
        write_calls_succeeded: those the tool carried out (None in rows stored before v4).
        turns: agent turns taken.
        termination: why the episode ended (``"agent_stop"``, ``"max_steps"``, ...).
    """

    task_id: str
    trial: int
    category: str | None
    reward: float
    db_match: bool | None = None
    communicate_match: bool | None = None
    write_calls: int = 0
    turns: int = 0
    termination: str = ""
    write_calls_succeeded: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise StoreError(f"EpisodeResult.task_id must be a non-empty str, got {self.task_id!r}")
        if not isinstance(self.trial, int) or isinstance(self.trial, bool) or self.trial < 0:
            raise StoreError(f"EpisodeResult.trial must be an int >= 0, got {self.trial!r}")
        if self.category is not None and self.category not in CATEGORIES:
            raise StoreError(
                f"EpisodeResult.category must be one of {', '.join(CATEGORIES)} or None, "
                f"got {self.category!r}.{did_you_mean(str(self.category), CATEGORIES)}"
            )
        if not isinstance(self.reward, (int, float)) or not (
            math.isfinite(self.reward) and 0.0 <= self.reward <= 1.0
        ):
            raise StoreError(f"EpisodeResult.reward must be a finite number in [0, 1], got {self.reward!r}")
        for name in ("write_calls", "turns"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise StoreError(f"EpisodeResult.{name} must be an int >= 0, got {v!r}")
        v = self.write_calls_succeeded
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= self.write_calls):
            raise StoreError(f"EpisodeResult.write_calls_succeeded must be None or an int in "
                             f"[0, write_calls={self.write_calls}], got {v!r}")
        for name in ("db_match", "communicate_match"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, bool):
                raise StoreError(f"EpisodeResult.{name} must be a bool or None, got {v!r}")


@dataclass(frozen=True)
class EvaluationRecord:
    """One stored evaluation: a set of episodes run at training step ``step``."""

    id: int
    run_id: int
    step: int
    split: str | None
    wall_s: float
    tokens: int
    tokens_per_s: float | None
    n_episodes: int
    created: str


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TrainStep:
    """What one training step's rollouts and update did: a point of the run's learning curves.

    Success rates are pass@1 over the step's rollouts of one task category (as on the
    leaderboard); ``None`` when the step rolled out no task of that category.
    """

    step: int
    """Training step, 1-based (the trainer's step count after the step)."""
    reward_mean: float
    """Mean verifier reward over every episode rolled out this step (kept or dropped)."""
    action_success: float | None
    """pass@1 over the rolled-out action tasks; ``None`` when none was drawn."""
    no_write_success: float | None
    """pass@1 over the rolled-out no-write tasks; ``None`` when none was drawn."""
    write_calls: float
    """Write-tool calls the tools carried out, per rolled-out episode (refused attempts excluded)."""
    episodes: int
    """Episodes rolled out this step."""
    updated: bool
    """Whether an optimizer update happened (a step with no mixed-reward group makes none)."""
    loss: float | None
    """The update's loss; ``None`` when there was no update."""
    groups_kept: int
    """Mixed-reward groups the update trained on."""
    groups_drawn: int
    """Groups rolled out (dynamic sampling may draw more than it keeps)."""
    step_s: float
    """Wall time of the step (rollouts + update), seconds."""
    probe_reward: float | None = None
    """Mean reward on the run's fixed probe tasks (the first N train tasks, greedy or with fixed draws) of the policy
    that rolled this step out, i.e. before its update (step 1: the starting policy); ``None``
    when the run has no probe. Unlike ``reward_mean`` it does not move with which tasks the step
    happened to draw."""
    probe_action_success: float | None = None
    """pass@1 of the probe's action tasks; ``None`` without a probe or without such a task."""
    probe_no_write_success: float | None = None
    """pass@1 of the probe's no-write tasks; ``None`` without a probe or without such a task."""
    probe_write_calls: float | None = None
    """Write-tool calls carried out per probe episode; ``None`` without a probe."""

    def __post_init__(self) -> None:
        for name in ("step", "episodes", "groups_kept", "groups_drawn"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise StoreError(f"TrainStep.{name} must be an int >= 0, got {v!r}")
        for name in ("reward_mean", "action_success", "no_write_success", "probe_reward", "probe_action_success",
                     "probe_no_write_success"):
            v = getattr(self, name)
            if (v is not None or name == "reward_mean") and not (_is_real(v) and 0.0 <= v <= 1.0):
                raise StoreError(f"TrainStep.{name} must be a finite number in [0, 1]"
                                 f"{'' if name == 'reward_mean' else ' or None'}, got {v!r}")
        for name in ("write_calls", "step_s", "probe_write_calls"):
            v = getattr(self, name)
            if (v is not None or name != "probe_write_calls") and not (_is_real(v) and v >= 0):
                raise StoreError(f"TrainStep.{name} must be a finite number >= 0"
                                 f"{' or None' if name == 'probe_write_calls' else ''}, got {v!r}")
        if not isinstance(self.updated, bool):
            raise StoreError(f"TrainStep.updated must be a bool, got {self.updated!r}")
        if self.loss is not None and not _is_real(self.loss):
            raise StoreError(f"TrainStep.loss must be a finite number or None, got {self.loss!r}")


@dataclass(frozen=True)
class PendingMerge:
    """What :meth:`ResultStore.merge_pending` did with the sidecar files: results ``merged`` into
    the store now, ``left`` waiting (the store was still locked) and ``rejected`` (unreadable or
    invalid; renamed ``*.rejected`` and kept)."""

    merged: int = 0
    left: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class DeadRun:
    """A ``running`` run whose owner process was gone, marked failed by :meth:`ResultStore.mark_dead_runs`."""

    run_id: int
    method: str
    reason: str


DIED_FLAG = "died"
"""Flag of a run whose process ended without closing it."""


@dataclass(frozen=True)
class StandIns:
    """Which parts of a run's setting are stand-ins, so its numbers are not benchmark numbers."""

    user: bool = False
    """An offline stand-in user simulator (e.g. τ³'s scripted user), not the benchmark's LLM user."""
    summarizer: bool = False
    """SGCD's credit reference came from the offline contrast summarizer, not an LLM."""
    prompt: bool = False
    """A stand-in system prompt (the compact variant), not the faithful benchmark prompt."""
    world: bool = False
    """A small fixture world of ours (e.g. AppWorld's ``fixture`` split), not the benchmark's."""


STAND_IN_COLUMNS = {"user": "stand_in_user", "summarizer": "stand_in_summarizer", "prompt": "stand_in_prompt",
                    "world": "stand_in_world"}
""":class:`StandIns` field → its column of ``runs`` (0 / 1)."""


@dataclass(frozen=True)
class RunRecord:
    """One stored run. ``flags`` maps a flag name (e.g. ``tool_use_collapse``) to its reason."""

    id: int
    created: str
    finished: str | None
    status: str
    method: str
    env: str
    split: str | None
    model: str | None
    user_simulator: str | None
    summarizer: str | None
    preset: str | None
    seed: int | None
    commit: str | None
    config: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    stand_ins: StandIns = field(default_factory=StandIns)


RUN_FIELDS = (
    "method", "env", "split", "model", "user_simulator", "summarizer", "preset", "seed",
    "commit", "config", "stand_ins",
)
"""Keyword arguments accepted by :meth:`ResultStore.start_run`."""

_APPLIED_WRITES = """
CREATE TABLE applied_writes (
    write_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    applied TEXT NOT NULL
);
"""
"""Ids of the sidecar results already merged: what makes merging a sidecar twice a no-op."""


def _norm(label: Any) -> str:
    return "".join(ch for ch in str(label or "").lower() if ch.isalnum())


def _stand_ins_from_labels(row: sqlite3.Row) -> StandIns:
    """The stand-ins of a run stored before v3, read from its labels by the rules the tables used
    then: a user or summarizer label naming "scripted" / "offline" / "stand-in", config
    ``prompt_variant == "compact"``, an env, split or config ``world`` naming "fixture"."""
    config = json.loads(row["config"] or "{}")
    user, summ = _norm(row["user_simulator"]), _norm(row["summarizer"])
    fixture = any("fixture" in _norm(v) for v in (row["env"], row["split"], config.get("world")))
    return StandIns(
        user="scripted" in user or "standin" in user,
        summarizer="offline" in summ or "standin" in summ,
        prompt=_norm(config.get("prompt_variant")) == "compact",
        world=fixture or bool(config.get("fixture_world")),
    )


def _add_stand_ins(conn: sqlite3.Connection) -> None:
    """v2 → v3: the stand-in columns, filled once from each run's labels."""
    for column in STAND_IN_COLUMNS.values():
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    rows = conn.execute("SELECT * FROM runs").fetchall()
    assignments = ", ".join(f"{c} = ?" for c in STAND_IN_COLUMNS.values())
    conn.executemany(f"UPDATE runs SET {assignments} WHERE id = ?",
                     [(*_stand_in_values(_stand_ins_from_labels(r)), r["id"]) for r in rows])


def _stand_in_values(stand_ins: StandIns) -> tuple[int, ...]:
    return tuple(int(getattr(stand_ins, name)) for name in STAND_IN_COLUMNS)


_TRAIN_STEPS = """
CREATE TABLE train_steps (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    reward_mean REAL NOT NULL,
    action_success REAL,
    no_write_success REAL,
    write_calls REAL NOT NULL,
    episodes INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    loss REAL,
    groups_kept INTEGER NOT NULL,
    groups_drawn INTEGER NOT NULL,
    step_s REAL NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
"""
"""One row per training step of a run (:class:`TrainStep`): its learning curves."""

_PROBE_COLUMNS = "".join(f"ALTER TABLE train_steps ADD COLUMN {c} REAL;\n" for c in (
    "probe_reward", "probe_action_success", "probe_no_write_success", "probe_write_calls"))
"""v5 → v6: the fixed-probe measurements of each step (:class:`TrainStep`)."""

_MIGRATIONS: dict[int, str | Callable[[sqlite3.Connection], None]] = {
    1: _APPLIED_WRITES, 2: _add_stand_ins,
    3: _TRAIN_STEPS + "ALTER TABLE episodes ADD COLUMN write_calls_succeeded INTEGER;\n",
    4: "ALTER TABLE runs ADD COLUMN owner TEXT;\n",
    5: _PROBE_COLUMNS}
"""Schema version → what takes it to the next version: statements, or a function of the connection."""

_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    method TEXT NOT NULL,
    env TEXT NOT NULL,
    split TEXT,
    model TEXT,
    user_simulator TEXT,
    summarizer TEXT,
    preset TEXT,
    seed INTEGER,
    "commit" TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    stand_in_user INTEGER NOT NULL DEFAULT 0,
    stand_in_summarizer INTEGER NOT NULL DEFAULT 0,
    stand_in_prompt INTEGER NOT NULL DEFAULT 0,
    stand_in_world INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE TABLE run_flags (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    flag TEXT NOT NULL,
    reason TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (run_id, flag)
);
CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    split TEXT,
    wall_s REAL NOT NULL,
    tokens INTEGER NOT NULL,
    tokens_per_s REAL,
    n_episodes INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX evaluations_run ON evaluations(run_id, id);
CREATE TABLE episodes (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations(id),
    task_id TEXT NOT NULL,
    trial INTEGER NOT NULL,
    category TEXT CHECK (category IS NULL OR category IN ('action', 'no_write')),
    reward REAL NOT NULL,
    db_match INTEGER,
    communicate_match INTEGER,
    write_calls INTEGER NOT NULL,
    turns INTEGER NOT NULL,
    termination TEXT NOT NULL,
    write_calls_succeeded INTEGER,
    PRIMARY KEY (evaluation_id, task_id, trial)
);
""" + _APPLIED_WRITES + _TRAIN_STEPS + _PROBE_COLUMNS


def _opt_bool(v: int | None) -> bool | None:
    return None if v is None else bool(v)


# --------------------------------------------------------------------------- store


class ResultStore:
    """Results of runs in one SQLite file (created with its parent folders if missing).

    Args:
        path: database file. Several processes may open the same file at once.
        timeout_s: how long one attempt waits for another connection's lock.
        write_budget_s: how long a write keeps retrying in all; ``None`` = the value of
            ``$SGCD_STORE_WRITE_BUDGET_S``, else :data:`WRITE_BUDGET_S`.

    Opening merges the results earlier commands kept in sidecar files (see the module docs);
    :attr:`merged_on_open` says how many.

    Raises:
        StoreCorruptError: the file is garbage, truncated or not an SQLite database (untouched).
        SchemaVersionError: the file has a newer (or unknown) schema version.
        StoreBusyError: another connection kept the store locked for the whole write budget
            while the schema had to be created or migrated.
        StoreError: a bad ``timeout_s`` / ``write_budget_s`` / ``$SGCD_STORE_WRITE_BUDGET_S``.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        timeout_s: float = BUSY_TIMEOUT_MS / 1000,
        write_budget_s: float | None = None,
    ):
        self.path = Path(path)
        self._timeout_s = _check_seconds(timeout_s, "timeout_s", timeout_s)
        self._write_budget_s = _write_budget(write_budget_s)
        self.kept_pending: list[Path] = []  # sidecars this instance wrote (the store stayed locked)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _check_readable(self.path, self._timeout_s)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # what the code says (Python's implicit transactions would hide its boundaries).
        self._conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        try:
            self._configure()
            self._init_schema()
        except BaseException as err:
            self._conn.close()
            what = _CORRUPT_CODES.get(_primary_code(err) or -1) if isinstance(err, sqlite3.Error) else None
            if what is not None:  # damaged after the check (replaced under us)
                raise StoreCorruptError(_corrupt_message(self.path, f"{what} ({err})")) from err
            raise
        # One attempt only: a command that just reads must not wait out someone's lock; what
        # is left waits for this store's next write or the next command.
        self.merged_on_open: PendingMerge = self.merge_pending(budget_s=self._timeout_s)
        self.dead_on_open: list[DeadRun] = self.mark_dead_runs(budget_s=self._timeout_s)

    # -- lifecycle
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _configure(self) -> None:
        self._conn.row_factory = sqlite3.Row
        mode = self._retry_busy(
            lambda: self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0],
            budget_s=self._write_budget_s, what="switch to WAL",
        )
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch {self.path} to WAL mode (journal_mode={mode})")
        # FULL: a committed evaluation survives power loss, not only a process crash.
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    def _init_schema(self) -> None:
        version = self.schema_version
        if version == SCHEMA_VERSION:
            return
        self._check_version(version)
        # Another process may be creating or migrating it right now: decide inside the lock.
        self._write(self._create_or_migrate, budget_s=self._write_budget_s, what="schema setup")

    def _create_or_migrate(self) -> None:
        """Inside a write transaction: create the schema in an empty file, or bring an older
        one up to :data:`SCHEMA_VERSION`."""
        version = self.schema_version
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            tables = self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
            if tables:
                raise SchemaVersionError(
                    f"{self.path} is an SQLite file with tables {[t[0] for t in tables]} but no "
                    "sgcd-bench schema version; refusing to write into a foreign database"
                )
            self._execute_statements(_SCHEMA)
        else:
            for old in range(version, SCHEMA_VERSION):
                step = _MIGRATIONS[old]
                if isinstance(step, str):
                    self._execute_statements(step)
                else:
                    step(self._conn)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _execute_statements(self, script: str) -> None:
        """Run ``;``-separated statements one by one (``executescript`` would COMMIT)."""
        for stmt in script.split(";"):
            if stmt.strip():
                self._conn.execute(stmt)

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION or version < 0:
            raise SchemaVersionError(
                f"{self.path} has result-store schema version {version}, but this sgcd-bench "
                f"reads version {SCHEMA_VERSION} (and older). Upgrade sgcd-bench, or use another file."
            )

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @property
    def pending_dir(self) -> Path:
        """The sidecar folder: ``results.sqlite`` → ``results.sqlite.pending``."""
        return self.path.with_name(self.path.name + PENDING_SUFFIX)

    def open_notices(self) -> list[str]:
        """Lines for the user about the sidecars this open found: merged, still waiting, rejected."""
        m, where = self.merged_on_open, self.pending_dir
        lines = [f"store: merged {m.merged} result(s) kept in {where} while the store was locked"] if m.merged else []
        if m.left:
            lines.append(f"store: {m.left} kept result(s) still wait in {where} (store locked); a later command "
                         "merges them")
        if m.rejected:
            lines.append(f"store: {m.rejected} kept result(s) could not be merged; see {where}/*.rejected")
        lines += [f"store: run #{d.run_id} ({d.method}) died: {d.reason}; marked failed" for d in self.dead_on_open]
        return lines

    def kept_notice(self) -> str | None:
        """A line if this instance had to keep results in sidecars (the store stayed locked), else None."""
        if not self.kept_pending:
            return None
        return (f"store locked: {len(self.kept_pending)} result(s) kept in {self.pending_dir}; the next "
                "sgcd-bench command merges them")

    # -- writes
    def start_run(self, **fields_: Any) -> int:
        """Create a run with status ``running``; returns its id.

        Keyword arguments (``method`` and ``env`` required): ``method, env, split, model,
        user_simulator, summarizer, preset, seed, commit, config`` (a JSON-serialisable dict),
        ``stand_ins`` (a :class:`StandIns`; default: none).
        Raises :class:`StoreBusyError` when the store stays locked past the write budget
        (nothing is finished yet, so nothing is kept).
        """
        unknown = sorted(set(fields_) - set(RUN_FIELDS))
        if unknown:
            raise StoreError(
                f"start_run got unknown field {unknown[0]!r}. Allowed: {', '.join(RUN_FIELDS)}."
                + did_you_mean(unknown[0], RUN_FIELDS)
            )
        for req in ("method", "env"):
            if not isinstance(fields_.get(req), str) or not fields_[req]:
                raise StoreError(f"start_run needs {req}= as a non-empty str, got {fields_.get(req)!r}")
        seed = fields_.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise StoreError(f"start_run seed must be an int or None, got {seed!r}")
        for name in ("split", "model", "user_simulator", "summarizer", "preset", "commit"):
            v = fields_.get(name)
            if v is not None and not isinstance(v, str):
                raise StoreError(f"start_run {name} must be a str or None, got {v!r}")
        stand_ins = fields_.get("stand_ins") or StandIns()
        if not isinstance(stand_ins, StandIns):
            raise StoreError(f"start_run stand_ins must be a StandIns, got {type(stand_ins).__name__}")
        config = fields_.get("config") or {}
        if not isinstance(config, dict):
            raise StoreError(f"start_run config must be a dict, got {type(config).__name__}")
        try:
            config_json = json.dumps(config, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"start_run config must be JSON-serialisable: {e}") from None
        row = (_now(), "running", fields_["method"], fields_["env"], fields_.get("split"),
               fields_.get("model"), fields_.get("user_simulator"), fields_.get("summarizer"),
               fields_.get("preset"), seed, fields_.get("commit"), config_json, *_stand_in_values(stand_ins),
               owner_token())
        columns = ('created, status, method, env, split, model, user_simulator, summarizer, preset, seed, '
                   '"commit", config, ' + ", ".join(STAND_IN_COLUMNS.values()) + ", owner")

        def insert() -> int:
            cur = self._conn.execute(f"INSERT INTO runs ({columns}) VALUES ({','.join('?' * len(row))})", row)
            return int(cur.lastrowid)

        return self._write(insert, budget_s=self._write_budget_s, what="start_run")

    def record_evaluation(
        self,
        run_id: int,
        step: int,
        episodes: Sequence[EpisodeResult],
        *,
        wall_s: float,
        tokens: int,
        split: str | None = None,
    ) -> int | None:
        """Store one finished evaluation and all its episodes in ONE transaction; returns its id.

        Either the evaluation row and every episode are committed, or (on any exception,
        crash or kill before ``COMMIT``) nothing is. ``split`` defaults to the run's split.
        ``tokens_per_s`` = tokens / wall_s (``None`` when wall_s == 0).

        Returns ``None`` when the store stayed locked past the write budget: the evaluation is
        then kept in a sidecar file (listed in :attr:`kept_pending`) that the next open merges.
        """
        episodes = list(episodes)
        _check_evaluation(step, episodes, wall_s, tokens)
        created = _now()

        def insert() -> int:
            return self._insert_evaluation(run_id, step, split, float(wall_s), tokens, episodes, created)

        def as_pending() -> dict[str, Any]:
            return {"run_id": run_id, "step": step, "split": split, "wall_s": float(wall_s),
                    "tokens": tokens, "created": created, "episodes": [asdict(e) for e in episodes]}

        return self._store_or_keep("evaluation", insert, as_pending)

    def record_step(self, run_id: int, step: TrainStep) -> int | None:
        """Store one training step of a run in its own transaction; returns the step number.

        ``None`` when the store stayed locked past the write budget: the step is then kept in a
        sidecar file that the next open merges, as :meth:`record_evaluation` does. Raises
        :class:`StoreError` for an unknown run or a step the run already has.
        """
        if not isinstance(step, TrainStep):
            raise StoreError(f"record_step needs a TrainStep, got {type(step).__name__}")
        created = _now()
        return self._store_or_keep(
            "step",
            lambda: self._insert_step(run_id, step, created),
            lambda: {"run_id": run_id, "step": asdict(step), "created": created},
        )

    def reopen_run(self, run_id: int, *, config: dict[str, Any]) -> None:
        """Set a stored run back to ``running`` under this process, with the resumed run's
        ``config`` (e.g. more steps); its steps, evaluations and flags stay."""
        config_json = json.dumps(config, sort_keys=True, allow_nan=False)

        def update() -> None:
            self._require_run(run_id)
            self._conn.execute("UPDATE runs SET status = 'running', finished = NULL, owner = ?, config = ? "
                               "WHERE id = ?", (owner_token(), config_json, run_id))
            self._conn.execute("DELETE FROM run_flags WHERE run_id = ? AND flag IN ('died', 'interrupted')",
                               (run_id,))

        self._write(update, budget_s=self._write_budget_s, what="reopen_run")

    def drop_steps_after(self, run_id: int, step: int) -> int:
        """Forget a run's stored training steps after ``step`` (a resume from an earlier
        checkpoint trains them again); returns how many were dropped. Evaluations stay."""
        def delete() -> int:
            self._require_run(run_id)
            return self._conn.execute("DELETE FROM train_steps WHERE run_id = ? AND step > ?",
                                      (run_id, step)).rowcount

        return self._write(delete, budget_s=self._write_budget_s, what="drop_steps_after")

    def mark_dead_runs(self, *, budget_s: float | None = None) -> list[DeadRun]:
        """Mark every ``running`` run whose owner process on this host is gone as ``failed``
        with the flag ``died`` (its finished steps and evaluations stay); returns them."""
        budget = self._write_budget_s if budget_s is None else budget_s
        rows = self._conn.execute("SELECT id, method, owner FROM runs WHERE status = 'running'").fetchall()
        dead = [r for r in rows if owner_alive(r["owner"]) is False]
        if not dead:
            return []
        found: list[DeadRun] = []

        def mark() -> None:
            now = _now()
            for r in dead:
                still = self._conn.execute("SELECT owner FROM runs WHERE id = ? AND status = 'running'",
                                           (r["id"],)).fetchone()
                if still is None or still["owner"] != r["owner"]:
                    continue  # finished or resumed meanwhile
                steps = self._conn.execute("SELECT COUNT(*) FROM train_steps WHERE run_id = ?",
                                           (r["id"],)).fetchone()[0]
                evals = self._conn.execute("SELECT COUNT(*) FROM evaluations WHERE run_id = ?",
                                           (r["id"],)).fetchone()[0]
                pid = r["owner"].split(":")[-2]
                reason = (f"process {pid} ended without closing the run (killed or crashed); "
                          f"{steps} finished step(s) and {evals} evaluation(s) kept")
                self._update_status(r["id"], "failed", now)
                self._insert_flag(r["id"], DIED_FLAG, reason, now)
                found.append(DeadRun(int(r["id"]), r["method"], reason))

        try:
            self._write(mark, budget_s=budget, what="mark dead runs")
        except StoreBusyError:
            return []  # a later command marks them
        return found

    def finish_run(self, run_id: int, status: Status = "finished") -> None:
        """Close a run with status ``finished`` or ``failed`` (kept in a sidecar file, like an
        evaluation, when the store stays locked)."""
        _check_status(status)
        finished = None if status == "running" else _now()
        self._store_or_keep(
            "finish_run",
            lambda: self._update_status(run_id, status, finished),
            lambda: {"run_id": run_id, "status": status, "finished": finished},
        )

    def flag_run(self, run_id: int, flag: str, reason: str) -> None:
        """Mark a run (e.g. ``tool_use_collapse``) with a human-readable reason; re-flagging
        replaces the reason. Kept in a sidecar file when the store stays locked."""
        _check_flag(flag, reason)
        created = _now()
        self._store_or_keep(
            "flag_run",
            lambda: self._insert_flag(run_id, flag, reason, created),
            lambda: {"run_id": run_id, "flag": flag, "reason": reason, "created": created},
        )

    def merge_pending(self, *, budget_s: float | None = None) -> PendingMerge:
        """Merge the results kept in sidecar files into the store, oldest first, each in one
        transaction; delete each file once its merge committed. Idempotent: a sidecar already
        merged (a crash before its deletion, another process merging it too) adds nothing.
        ``budget_s`` (default: the write budget) bounds the wait for a busy lock; what could not
        be merged in it stays for later."""
        budget = self._write_budget_s if budget_s is None else _check_seconds(budget_s, "budget_s", budget_s)
        files = self._pending_files()
        merged = rejected = left = 0
        for i, file in enumerate(files):
            try:
                doc = _read_pending(file)
            except FileNotFoundError:
                continue  # another process merged it meanwhile
            except (OSError, ValueError) as err:
                rejected += self._reject(file, f"unreadable: {err}")
                continue
            try:
                merged += self._write(lambda: self._apply_pending(doc), budget_s=budget, what="merge")
            except StoreBusyError:
                left = len(files) - i
                break
            except (ValueError, KeyError, TypeError, sqlite3.IntegrityError, sqlite3.InterfaceError) as err:
                rejected += self._reject(file, f"invalid: {err}")
                continue
            file.unlink(missing_ok=True)
        if merged:
            log.info("%s: merged %d result(s) kept in %s while the store was locked",
                     self.path, merged, self.pending_dir)
        if left:
            log.warning("%s is still locked: %d kept result(s) wait in %s for a later command",
                        self.path, left, self.pending_dir)
        return PendingMerge(merged=merged, left=left, rejected=rejected)

    # -- write machinery
    def _store_or_keep(
        self, kind: str, write: Callable[[], T], as_pending: Callable[[], dict[str, Any]]
    ) -> T | None:
        """Write a finished result now, retrying past a busy lock; if the store stays locked
        past the budget, keep it in a sidecar file and return ``None``. Results already waiting
        in sidecars go first (one attempt), so the store receives them in order and a stuck
        lock costs the budget once, not once per write."""
        if self._pending_files() and self.merge_pending(budget_s=self._timeout_s).left:
            self._keep_pending(kind, as_pending(), why="earlier results are still waiting for the lock")
            return None
        try:
            return self._write(write, budget_s=self._write_budget_s, what=kind)
        except StoreBusyError as err:
            self._keep_pending(kind, as_pending(), why=str(err))
            return None

    def _write(self, body: Callable[[], T], *, budget_s: float, what: str) -> T:
        """``body`` in one ``BEGIN IMMEDIATE`` transaction, retried while the store is locked."""
        return self._retry_busy(lambda: self._in_transaction(body), budget_s=budget_s, what=what)

    def _in_transaction(self, body: Callable[[], T]) -> T:
        with _Transaction(self._conn):
            return body()

    def _retry_busy(self, op: Callable[[], T], *, budget_s: float, what: str) -> T:
        """Run ``op`` until it gets past a busy lock: attempts of at most ``timeout_s`` with
        backoff between them, for ``budget_s`` in all; then :class:`StoreBusyError`."""
        deadline = time.monotonic() + budget_s
        attempt = 0
        try:
            while True:
                self._set_busy_timeout(min(self._timeout_s, max(0.0, deadline - time.monotonic())))
                try:
                    return op()
                except sqlite3.OperationalError as err:
                    if not _is_busy(err):
                        raise
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise StoreBusyError(
                            f"{self.path} stayed locked by another connection for {budget_s:g} s "
                            f"({what}: {err}); set {WRITE_BUDGET_ENV} to wait longer"
                        ) from err
                    if attempt == 0:
                        log.warning("%s is locked by another connection; the %s waits up to %.0f s "
                                    "for it (set %s to change)", self.path, what, remaining, WRITE_BUDGET_ENV)
                    time.sleep(min(remaining, _backoff_s(attempt)))
                    attempt += 1
        finally:
            self._set_busy_timeout(self._timeout_s)

    def _set_busy_timeout(self, seconds: float) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def _require_run(self, run_id: int) -> sqlite3.Row:
        row = self._conn.execute("SELECT id, split FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run with id {run_id!r} in {self.path}")
        return row

    def _insert_evaluation(
        self, run_id: int, step: int, split: str | None, wall_s: float, tokens: int,
        episodes: Sequence[EpisodeResult], created: str,
    ) -> int:
        """Inside a write transaction: the evaluation row and its episodes; returns its id."""
        run = self._require_run(run_id)
        split = run["split"] if split is None else split
        tps = tokens / wall_s if wall_s > 0 else None
        cur = self._conn.execute(
            "INSERT INTO evaluations (run_id, step, split, wall_s, tokens, tokens_per_s, "
            "n_episodes, created) VALUES (?,?,?,?,?,?,?,?)",
            (run_id, step, split, wall_s, tokens, tps, len(episodes), created),
        )
        eval_id = int(cur.lastrowid)
        # Rows are built lazily inside the transaction; anything that fails here
        # (a duplicate (task_id, trial), a kill) rolls the evaluation row back too.
        self._conn.executemany(
            "INSERT INTO episodes (evaluation_id, task_id, trial, category, reward, db_match, "
            "communicate_match, write_calls, turns, termination, write_calls_succeeded) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                (eval_id, e.task_id, e.trial, e.category, float(e.reward),
                 None if e.db_match is None else int(e.db_match),
                 None if e.communicate_match is None else int(e.communicate_match),
                 e.write_calls, e.turns, e.termination, e.write_calls_succeeded)
                for e in episodes
            ),
        )
        return eval_id

    def _insert_step(self, run_id: int, step: TrainStep, created: str) -> int:
        """Inside a write transaction: one training step's row; returns its step number."""
        self._require_run(run_id)
        if self._conn.execute("SELECT 1 FROM train_steps WHERE run_id = ? AND step = ?",
                              (run_id, step.step)).fetchone():
            raise StoreError(f"run {run_id} already has a stored training step {step.step} in {self.path}")
        self._conn.execute(
            "INSERT INTO train_steps (run_id, step, reward_mean, action_success, no_write_success, write_calls, "
            "episodes, updated, loss, groups_kept, groups_drawn, step_s, probe_reward, probe_action_success, "
            "probe_no_write_success, probe_write_calls, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, step.step, float(step.reward_mean), step.action_success, step.no_write_success,
             float(step.write_calls), step.episodes, int(step.updated), step.loss, step.groups_kept,
             step.groups_drawn, float(step.step_s), step.probe_reward, step.probe_action_success,
             step.probe_no_write_success, step.probe_write_calls, created),
        )
        return step.step

    def _update_status(self, run_id: int, status: str, finished: str | None) -> None:
        """Inside a write transaction: set a run's status and finish time."""
        self._require_run(run_id)
        self._conn.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, finished, run_id))

    def _insert_flag(self, run_id: int, flag: str, reason: str, created: str) -> None:
        """Inside a write transaction: add or replace a run's flag."""
        self._require_run(run_id)
        self._conn.execute(
            "INSERT OR REPLACE INTO run_flags (run_id, flag, reason, created) VALUES (?,?,?,?)",
            (run_id, flag, reason, created),
        )

    # -- sidecar files
    def _pending_files(self) -> list[Path]:
        """The sidecar results waiting to be merged, oldest first (names start with the time)."""
        try:
            return sorted(self.pending_dir.glob("*.json"))
        except OSError:
            return []

    def _keep_pending(self, kind: str, args: dict[str, Any], *, why: str) -> Path:
        """Keep one result in a new sidecar file (atomically); returns its path. Raises
        :class:`StoreBusyError` only if even that file cannot be written."""
        write_id = uuid.uuid4().hex
        doc = {"format": PENDING_FORMAT, "write_id": write_id, "kind": kind, "store": str(self.path),
               "kept": _now(), "args": args}
        target = self.pending_dir / f"{time.time_ns():020d}-{write_id}.json"
        try:
            self.pending_dir.mkdir(exist_ok=True)
            _write_atomically(target, json.dumps(doc, allow_nan=False, indent=1))
        except (OSError, ValueError) as err:
            raise StoreBusyError(f"{why}; keeping the {kind} in {target} failed too: {err}") from err
        self.kept_pending.append(target)
        log.warning("kept the %s in %s (%s); the next command that opens %s merges it",
                    kind, target, why, self.path)
        return target

    def _apply_pending(self, doc: dict[str, Any]) -> int:
        """Inside a write transaction: apply one kept result unless it was already; 1 if it was
        applied now, 0 if it had been before."""
        seen = self._conn.execute(
            "SELECT 1 FROM applied_writes WHERE write_id = ?", (doc["write_id"],)
        ).fetchone()
        if seen:
            return 0
        args, kind = doc["args"], doc["kind"]
        if kind == "evaluation":
            episodes = [EpisodeResult(**e) for e in args["episodes"]]
            _check_evaluation(args["step"], episodes, args["wall_s"], args["tokens"])
            self._insert_evaluation(args["run_id"], args["step"], args["split"], float(args["wall_s"]),
                                    args["tokens"], episodes, args["created"])
        elif kind == "step":
            self._insert_step(args["run_id"], TrainStep(**args["step"]), args["created"])
        elif kind == "finish_run":
            _check_status(args["status"])
            self._update_status(args["run_id"], args["status"], args["finished"])
        else:
            _check_flag(args["flag"], args["reason"])
            self._insert_flag(args["run_id"], args["flag"], args["reason"], args["created"])
        self._conn.execute(
            "INSERT INTO applied_writes (write_id, kind, applied) VALUES (?,?,?)",
            (doc["write_id"], kind, _now()),
        )
        return 1

    def _reject(self, file: Path, why: str) -> int:
        """Set a sidecar that cannot be merged aside as ``*.rejected`` (kept); 1 if it was."""
        target = file.with_name(file.name + ".rejected")
        try:
            os.replace(file, target)
        except FileNotFoundError:
            return 0
        log.warning("%s: set %s aside, not merged (%s)", self.path, target, why)
        return 1

    # -- reads
    def run(self, run_id: int) -> RunRecord:
        """The run with this id; :class:`StoreError` if there is none."""
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run with id {run_id!r} in {self.path}")
        return self._run_record(row)

    def runs(
        self,
        env: str | None = None,
        *,
        method: str | None = None,
        status: str | None = None,
        split: str | None = None,
    ) -> list[RunRecord]:
        """Runs matching every given filter, oldest first."""
        where, args = [], []
        for col, val in (("env", env), ("method", method), ("status", status), ("split", split)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [self._run_record(r) for r in self._conn.execute(sql, args).fetchall()]

    def evaluations(self, run_id: int) -> list[EvaluationRecord]:
        """Every committed evaluation of a run, in the order they were recorded."""
        rows = self._conn.execute(
            "SELECT * FROM evaluations WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
        return [self._eval_record(r) for r in rows]

    def latest_evaluation(self, run_id: int) -> EvaluationRecord | None:
        """The most recently recorded evaluation of a run, or ``None``."""
        row = self._conn.execute(
            "SELECT * FROM evaluations WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)
        ).fetchone()
        return None if row is None else self._eval_record(row)

    def episodes(self, eval_id: int) -> list[EpisodeResult]:
        """The episodes of one evaluation, ordered by task id then trial."""
        rows = self._conn.execute(
            "SELECT * FROM episodes WHERE evaluation_id = ? ORDER BY task_id, trial", (eval_id,)
        ).fetchall()
        return [
            EpisodeResult(
                task_id=r["task_id"], trial=r["trial"], category=r["category"], reward=r["reward"],
                db_match=_opt_bool(r["db_match"]), communicate_match=_opt_bool(r["communicate_match"]),
                write_calls=r["write_calls"], turns=r["turns"], termination=r["termination"],
                write_calls_succeeded=r["write_calls_succeeded"],
            )
            for r in rows
        ]

    def steps(self, run_id: int) -> list[TrainStep]:
        """Every stored training step of a run, by step (empty for a run stored before v4 or
        trained by a command that records none); :class:`StoreError` for an unknown run."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT * FROM train_steps WHERE run_id = ? ORDER BY step", (run_id,)
        ).fetchall()
        return [
            TrainStep(**{f.name: (bool(r[f.name]) if f.name == "updated" else r[f.name]) for f in fields(TrainStep)})
            for r in rows
        ]

    def episode_count(self, eval_id: int) -> int:
        """How many episode rows an evaluation has (equals its ``n_episodes`` when intact)."""
        return int(self._conn.execute(
            "SELECT COUNT(*) FROM episodes WHERE evaluation_id = ?", (eval_id,)
        ).fetchone()[0])

    def flags(self, run_id: int) -> dict[str, str]:
        rows = self._conn.execute(
            "SELECT flag, reason FROM run_flags WHERE run_id = ? ORDER BY created", (run_id,)
        ).fetchall()
        return {r["flag"]: r["reason"] for r in rows}

    # -- helpers
    def _run_record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"], created=row["created"], finished=row["finished"], status=row["status"],
            method=row["method"], env=row["env"], split=row["split"], model=row["model"],
            user_simulator=row["user_simulator"], summarizer=row["summarizer"],
            preset=row["preset"], seed=row["seed"], commit=row["commit"],
            config=json.loads(row["config"]), flags=self.flags(row["id"]),
            stand_ins=StandIns(**{name: bool(row[column]) for name, column in STAND_IN_COLUMNS.items()}),
        )

    @staticmethod
    def _eval_record(row: sqlite3.Row) -> EvaluationRecord:
        return EvaluationRecord(**{f.name: row[f.name] for f in fields(EvaluationRecord)})


def _check_evaluation(step: Any, episodes: Sequence[Any], wall_s: Any, tokens: Any) -> None:
    """Raise :class:`StoreError` unless the arguments make a valid evaluation."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise StoreError(f"record_evaluation step must be an int >= 0, got {step!r}")
    if isinstance(wall_s, bool) or not isinstance(wall_s, (int, float)) or not math.isfinite(wall_s) \
            or wall_s < 0:
        raise StoreError(f"record_evaluation wall_s must be a finite number >= 0, got {wall_s!r}")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise StoreError(f"record_evaluation tokens must be an int >= 0, got {tokens!r}")
    if not episodes:
        raise StoreError("record_evaluation needs at least one episode")
    seen: set[tuple[str, int]] = set()
    for i, ep in enumerate(episodes):
        if not isinstance(ep, EpisodeResult):
            raise StoreError(f"episodes[{i}] must be an EpisodeResult, got {type(ep).__name__}")
        key = (ep.task_id, ep.trial)
        if key in seen:
            raise StoreError(f"episodes[{i}] repeats task_id={key[0]!r} trial={key[1]}; "
                             "each (task_id, trial) may appear once per evaluation")
        seen.add(key)


def _check_status(status: Any) -> None:
    if status not in RUN_STATUSES:
        raise StoreError(
            f"finish_run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}."
            + did_you_mean(str(status), RUN_STATUSES)
        )


def _check_flag(flag: Any, reason: Any) -> None:
    if not isinstance(flag, str) or not flag:
        raise StoreError(f"flag_run flag must be a non-empty str, got {flag!r}")
    if not isinstance(reason, str) or not reason:
        raise StoreError(f"flag_run reason must be a non-empty str, got {reason!r}")


class _Transaction:
    """``BEGIN IMMEDIATE`` (take the write lock up front, waiting up to the busy timeout),
    ``COMMIT`` on success, ``ROLLBACK`` on any exception (KeyboardInterrupt included) and when
    the ``COMMIT`` itself fails, so a retry starts from a clean connection."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self._rollback()
            return
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:  # SQLite may have rolled back already (e.g. on I/O errors)
            self._conn.execute("ROLLBACK")
