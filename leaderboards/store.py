"""SQLite result store: runs, evaluations and their episodes.

One database file holds every run of every method and environment. Guarantees:

* **WAL journal, one transaction per evaluation.** :meth:`ResultStore.record_evaluation`
  writes the evaluation row and all of its episodes inside a single ``BEGIN IMMEDIATE …
  COMMIT``. A crash, ``SIGKILL`` or Ctrl-C at any point leaves every committed evaluation
  intact and no partial one (SQLite rolls an uncommitted WAL tail back on the next open).
  Each evaluation row stores ``n_episodes`` so readers can check completeness.
* **Several processes at once.** Every connection sets a busy timeout, so concurrent writers
  queue instead of failing, and WAL lets readers run while a writer commits.
* **Versioned schema.** ``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`. Opening a file
  written by a newer sgcd-bench raises :class:`SchemaVersionError` instead of guessing.

Example::

    store = ResultStore("results.sqlite")
    run_id = store.start_run(method="sgcd", env="sgcd_envs/Tau3Airline-v0", split="test",
                             model="SmolLM2-135M-Instruct", user_simulator="scripted (stand-in)",
                             seed=0, config={"lr": 1e-6})
    store.record_evaluation(run_id, step=10, episodes=[EpisodeResult("2", 0, "no_write", 1.0)],
                            wall_s=12.5, tokens=3_000)
    store.finish_run(run_id, "finished")
"""

from __future__ import annotations

import difflib
import json
import math
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CATEGORIES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "EpisodeResult",
    "EvaluationRecord",
    "ResultStore",
    "RunRecord",
    "SchemaVersionError",
    "StoreError",
    "git_commit",
]

SCHEMA_VERSION = 1
"""Version written to ``PRAGMA user_version``; bump it with a migration on any schema change."""

RUN_STATUSES = ("running", "finished", "failed")
CATEGORIES = ("action", "no_write")
"""Episode categories: a task whose reference actions contain a write tool is an ``action``
task, otherwise ``no_write``. ``None`` = not applicable (e.g. AppWorld)."""

BUSY_TIMEOUT_MS = 30_000
"""How long a connection waits for another process's write lock before giving up (ours)."""

Status = Literal["running", "finished", "failed"]


class StoreError(ValueError):
    """Bad input to the result store (unknown field, unknown run, bad value)."""


class SchemaVersionError(RuntimeError):
    """The database file was written with a schema this version cannot read."""


def _suggest(value: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


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
        write_calls: number of write-tool calls the agent made.
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

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise StoreError(f"EpisodeResult.task_id must be a non-empty str, got {self.task_id!r}")
        if not isinstance(self.trial, int) or isinstance(self.trial, bool) or self.trial < 0:
            raise StoreError(f"EpisodeResult.trial must be an int >= 0, got {self.trial!r}")
        if self.category is not None and self.category not in CATEGORIES:
            raise StoreError(
                f"EpisodeResult.category must be one of {', '.join(CATEGORIES)} or None, "
                f"got {self.category!r}.{_suggest(str(self.category), CATEGORIES)}"
            )
        if not isinstance(self.reward, (int, float)) or not (
            math.isfinite(self.reward) and 0.0 <= self.reward <= 1.0
        ):
            raise StoreError(f"EpisodeResult.reward must be a finite number in [0, 1], got {self.reward!r}")
        for name in ("write_calls", "turns"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise StoreError(f"EpisodeResult.{name} must be an int >= 0, got {v!r}")
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


RUN_FIELDS = (
    "method", "env", "split", "model", "user_simulator", "summarizer", "preset", "seed",
    "commit", "config",
)
"""Keyword arguments accepted by :meth:`ResultStore.start_run`."""

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
    config TEXT NOT NULL DEFAULT '{}'
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
    PRIMARY KEY (evaluation_id, task_id, trial)
);
"""


def _opt_bool(v: int | None) -> bool | None:
    return None if v is None else bool(v)


# --------------------------------------------------------------------------- store


class ResultStore:
    """Results of runs in one SQLite file (created with its parent folders if missing).

    Args:
        path: database file. Several processes may open the same file at once.
        timeout_s: how long to wait for another process's write lock.

    Raises:
        SchemaVersionError: the file has a newer (or unknown) schema version.
    """

    def __init__(self, path: str | PathLike[str], *, timeout_s: float = BUSY_TIMEOUT_MS / 1000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # what the code says (Python's implicit transactions would hide its boundaries).
        self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch {self.path} to WAL mode (journal_mode={mode})")
        # FULL: a committed evaluation survives power loss, not only a process crash.
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._init_schema()

    # -- lifecycle
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_schema(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        self._check_version(version)
        self._conn.execute("BEGIN IMMEDIATE")  # another process may be creating it right now
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            if version == 0:
                tables = self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
                if tables:
                    raise SchemaVersionError(
                        f"{self.path} is an SQLite file with tables {[t[0] for t in tables]} but no "
                        "sgcd-bench schema version; refusing to write into a foreign database"
                    )
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._conn.execute(stmt)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION or version < 0:
            raise SchemaVersionError(
                f"{self.path} has result-store schema version {version}, but this sgcd-bench "
                f"reads version {SCHEMA_VERSION} (and older). Upgrade sgcd-bench, or use another file."
            )

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- writes
    def start_run(self, **fields_: Any) -> int:
        """Create a run with status ``running``; returns its id.

        Keyword arguments (``method`` and ``env`` required): ``method, env, split, model,
        user_simulator, summarizer, preset, seed, commit, config`` (a JSON-serialisable dict).
        """
        unknown = sorted(set(fields_) - set(RUN_FIELDS))
        if unknown:
            raise StoreError(
                f"start_run got unknown field {unknown[0]!r}. Allowed: {', '.join(RUN_FIELDS)}."
                + _suggest(unknown[0], RUN_FIELDS)
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
        config = fields_.get("config") or {}
        if not isinstance(config, dict):
            raise StoreError(f"start_run config must be a dict, got {type(config).__name__}")
        try:
            config_json = json.dumps(config, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"start_run config must be JSON-serialisable: {e}") from None
        with self._transaction():
            cur = self._conn.execute(
                'INSERT INTO runs (created, status, method, env, split, model, user_simulator, '
                'summarizer, preset, seed, "commit", config) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
                (_now(), "running", fields_["method"], fields_["env"], fields_.get("split"),
                 fields_.get("model"), fields_.get("user_simulator"), fields_.get("summarizer"),
                 fields_.get("preset"), seed, fields_.get("commit"), config_json),
            )
            return int(cur.lastrowid)

    def record_evaluation(
        self,
        run_id: int,
        step: int,
        episodes: Sequence[EpisodeResult],
        *,
        wall_s: float,
        tokens: int,
        split: str | None = None,
    ) -> int:
        """Store one finished evaluation and all its episodes in ONE transaction; returns its id.

        Either the evaluation row and every episode are committed, or (on any exception,
        crash or kill before ``COMMIT``) nothing is. ``split`` defaults to the run's split.
        ``tokens_per_s`` = tokens / wall_s (``None`` when wall_s == 0).
        """
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise StoreError(f"record_evaluation step must be an int >= 0, got {step!r}")
        if not isinstance(wall_s, (int, float)) or not math.isfinite(wall_s) or wall_s < 0:
            raise StoreError(f"record_evaluation wall_s must be a finite number >= 0, got {wall_s!r}")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise StoreError(f"record_evaluation tokens must be an int >= 0, got {tokens!r}")
        episodes = list(episodes)
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
        run = self.run(run_id)
        split = run.split if split is None else split
        tps = tokens / wall_s if wall_s > 0 else None
        with self._transaction():
            cur = self._conn.execute(
                "INSERT INTO evaluations (run_id, step, split, wall_s, tokens, tokens_per_s, "
                "n_episodes, created) VALUES (?,?,?,?,?,?,?,?)",
                (run_id, step, split, float(wall_s), tokens, tps, len(episodes), _now()),
            )
            eval_id = int(cur.lastrowid)
            # Rows are built lazily inside the transaction; anything that fails here
            # (a duplicate (task_id, trial), a kill) rolls the evaluation row back too.
            self._conn.executemany(
                "INSERT INTO episodes (evaluation_id, task_id, trial, category, reward, db_match, "
                "communicate_match, write_calls, turns, termination) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    (eval_id, e.task_id, e.trial, e.category, float(e.reward),
                     None if e.db_match is None else int(e.db_match),
                     None if e.communicate_match is None else int(e.communicate_match),
                     e.write_calls, e.turns, e.termination)
                    for e in episodes
                ),
            )
        return eval_id

    def finish_run(self, run_id: int, status: Status = "finished") -> None:
        """Close a run with status ``finished`` or ``failed``."""
        if status not in RUN_STATUSES:
            raise StoreError(
                f"finish_run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}."
                + _suggest(str(status), RUN_STATUSES)
            )
        self.run(run_id)
        with self._transaction():
            self._conn.execute(
                "UPDATE runs SET status = ?, finished = ? WHERE id = ?",
                (status, None if status == "running" else _now(), run_id),
            )

    def flag_run(self, run_id: int, flag: str, reason: str) -> None:
        """Mark a run (e.g. ``tool_use_collapse``) with a human-readable reason; re-flagging
        replaces the reason."""
        if not isinstance(flag, str) or not flag:
            raise StoreError(f"flag_run flag must be a non-empty str, got {flag!r}")
        if not isinstance(reason, str) or not reason:
            raise StoreError(f"flag_run reason must be a non-empty str, got {reason!r}")
        self.run(run_id)
        with self._transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO run_flags (run_id, flag, reason, created) VALUES (?,?,?,?)",
                (run_id, flag, reason, _now()),
            )

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
            )
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
    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def _run_record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"], created=row["created"], finished=row["finished"], status=row["status"],
            method=row["method"], env=row["env"], split=row["split"], model=row["model"],
            user_simulator=row["user_simulator"], summarizer=row["summarizer"],
            preset=row["preset"], seed=row["seed"], commit=row["commit"],
            config=json.loads(row["config"]), flags=self.flags(row["id"]),
        )

    @staticmethod
    def _eval_record(row: sqlite3.Row) -> EvaluationRecord:
        return EvaluationRecord(**{f.name: row[f.name] for f in fields(EvaluationRecord)})


class _Transaction:
    """``BEGIN IMMEDIATE`` (take the write lock up front, waiting up to the busy timeout),
    ``COMMIT`` on success, ``ROLLBACK`` on any exception (KeyboardInterrupt included)."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
