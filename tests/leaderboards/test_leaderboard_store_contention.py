"""Result store under contention and damage: a real second connection holds the write lock
(retry past it; past the budget the result is kept in a sidecar file that the next open merges
exactly once), and a garbage or truncated file gets a one-line error and is left untouched."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from leaderboards.store import (SCHEMA_VERSION, STAND_IN_COLUMNS, EpisodeResult, ResultStore, StandIns, StoreError,
                                TrainStep)

BUDGET_ENV = "SGCD_STORE_WRITE_BUDGET_S"


def make_episodes(n: int) -> list[EpisodeResult]:
    return [
        EpisodeResult(f"task{j}", j % 2, "action" if j % 3 else "no_write", float(j % 2),
                      db_match=bool(j % 2), communicate_match=j % 5 != 0, write_calls=j % 3,
                      turns=j, termination="agent_stop")
        for j in range(n)
    ]


STEP = TrainStep(step=3, reward_mean=0.25, action_success=None, no_write_success=1.0, write_calls=0.5,
                 episodes=8, updated=False, loss=None, groups_kept=0, groups_drawn=4, step_s=4.0)


def pending_dir(db: Path) -> Path:
    """Where the store keeps results it could not write (documented layout)."""
    return db.with_name(db.name + ".pending")


class LockHolder:
    """A second connection, on its own thread, holding the store's write lock (``BEGIN
    EXCLUSIVE``) until :meth:`release` or for ``hold_s`` seconds, then rolling back."""

    def __init__(self, db: Path, hold_s: float = 30.0):
        self._db, self._hold_s = db, hold_s
        self._locked, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        con = sqlite3.connect(self._db, isolation_level=None, check_same_thread=False)
        try:
            con.execute("BEGIN EXCLUSIVE")
            con.execute("UPDATE runs SET preset = preset")  # a real (rolled back) write
            self._locked.set()
            self._release.wait(self._hold_s)
            con.execute("ROLLBACK")
        finally:
            con.close()

    def __enter__(self) -> LockHolder:
        self._thread.start()
        assert self._locked.wait(10), "the second connection never got the lock"
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_write_waits_out_a_lock_held_past_its_first_attempt(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(BUDGET_ENV, "20")
    db = tmp_path / "results.sqlite"
    eps = make_episodes(20)
    with ResultStore(db, timeout_s=0.2) as store:
        run_id = store.start_run(method="grpo", env="e", split="test")
        with caplog.at_level(logging.WARNING, logger="leaderboards.store"):
            with LockHolder(db, hold_s=1.2):
                started = time.monotonic()
                eval_id = store.record_evaluation(run_id, 3, eps, wall_s=2.0, tokens=400)
                waited = time.monotonic() - started
        assert waited > 0.6  # several 0.2 s attempts: it retried instead of failing
        assert "locked" in caplog.text  # and said that it was waiting
        ev = store.latest_evaluation(run_id)
        assert (ev.id, ev.step, ev.split, ev.wall_s, ev.tokens, ev.n_episodes) == (
            eval_id, 3, "test", 2.0, 400, 20)
        assert sorted(store.episodes(eval_id), key=lambda e: e.turns) == eps
        store.finish_run(run_id, "finished")
        assert store.run(run_id).status == "finished"
    assert not list(pending_dir(db).glob("*.json"))


def test_past_the_budget_results_go_to_a_sidecar_merged_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "1.0")
    db = tmp_path / "results.sqlite"
    eps = make_episodes(12)
    with ResultStore(db, timeout_s=0.1) as store:
        run_id = store.start_run(method="sgcd", env="e", split="test")
        with LockHolder(db):
            started = time.monotonic()
            kept = store.record_evaluation(run_id, 7, eps, wall_s=3.0, tokens=900)
            eval_s = time.monotonic() - started
            started = time.monotonic()
            kept_step = store.record_step(run_id, STEP)
            store.flag_run(run_id, "tool_use_collapse", "write calls 2.0 → 0.0")
            store.finish_run(run_id, "finished")
            later_s = time.monotonic() - started
        assert kept is None and kept_step is None  # not stored yet: kept in sidecars
        assert eval_s >= 0.9  # it used its retry budget first
        assert later_s < 0.8  # queued behind the pending result without a second budget
        assert len(store.kept_pending) == 4
    sidecars = sorted(pending_dir(db).glob("*.json"))
    assert sidecars == store.kept_pending
    assert [json.loads(f.read_text())["kind"] for f in sidecars] == ["evaluation", "step", "flag_run", "finish_run"]
    saved = [f.read_bytes() for f in sidecars]

    with ResultStore(db) as store:  # the next open merges them
        assert store.merged_on_open.merged == 4
        assert store.steps(run_id) == [STEP]
        [ev] = store.evaluations(run_id)
        assert (ev.step, ev.split, ev.wall_s, ev.tokens, ev.n_episodes) == (7, "test", 3.0, 900, 12)
        assert sorted(store.episodes(ev.id), key=lambda e: e.turns) == eps
        run = store.run(run_id)
        assert run.status == "finished" and run.flags == {"tool_use_collapse": "write calls 2.0 → 0.0"}
    assert not list(pending_dir(db).glob("*"))

    # The same sidecars again (a crash between the merge's commit and the files' deletion).
    for f, data in zip(sidecars, saved):
        f.write_bytes(data)
    with ResultStore(db) as store:
        assert store.merged_on_open.merged == 0
        [ev] = store.evaluations(run_id)
        assert store.episode_count(ev.id) == 12
        assert store._conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 12
        assert store._conn.execute("SELECT COUNT(*) FROM run_flags").fetchone()[0] == 1
        assert store.steps(run_id) == [STEP]
    assert not list(pending_dir(db).glob("*"))


def test_start_run_past_the_budget_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "0.3")
    db = tmp_path / "results.sqlite"
    with ResultStore(db, timeout_s=0.1) as store, LockHolder(db):
        with pytest.raises(StoreError) as info:
            store.start_run(method="grpo", env="e")
    message = str(info.value)
    assert "\n" not in message and str(db) in message and "locked" in message


def test_an_unreadable_sidecar_is_set_aside_not_deleted(tmp_path):
    db = tmp_path / "results.sqlite"
    ResultStore(db).close()
    pending_dir(db).mkdir()
    bad = pending_dir(db) / "00000000000000000001-bad.json"
    bad.write_text("{not json")
    with ResultStore(db) as store:
        assert (store.merged_on_open.merged, store.merged_on_open.rejected) == (0, 1)
    assert not bad.exists()
    assert (pending_dir(db) / (bad.name + ".rejected")).read_text() == "{not json"


def as_written_by_version(db: Path, version: int) -> None:
    """Make a store look like one an older sgcd-bench wrote: drop what later versions added
    (v2: the sidecars' ``applied_writes``; v3: the typed stand-in columns; v4: ``train_steps`` and
    the episodes' ``write_calls_succeeded``; v5: ``runs.owner``; v6: the steps' probe columns)."""
    con = sqlite3.connect(db)
    if version < 6:
        for column in ("probe_reward", "probe_action_success", "probe_no_write_success", "probe_write_calls"):
            con.execute(f"ALTER TABLE train_steps DROP COLUMN {column}")
    if version < 5:
        con.execute("ALTER TABLE runs DROP COLUMN owner")
    if version < 2:
        con.execute("DROP TABLE IF EXISTS applied_writes")
    if version < 3:
        for column in STAND_IN_COLUMNS.values():
            con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    if version < 4:
        con.execute("DROP TABLE train_steps")
        con.execute("ALTER TABLE episodes DROP COLUMN write_calls_succeeded")
    con.execute(f"PRAGMA user_version = {version}")
    con.commit()
    con.close()


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        run_id = store.start_run(method="grpo", env="e")
        store.record_evaluation(run_id, 0, make_episodes(3), wall_s=1, tokens=1)
    as_written_by_version(db, 1)
    with ResultStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store._conn.execute("SELECT COUNT(*) FROM applied_writes").fetchone()[0] == 0
        assert store.episode_count(store.latest_evaluation(run_id).id) == 3


def test_a_version_2_store_gets_typed_stand_ins_from_its_labels(tmp_path):
    db = tmp_path / "results.sqlite"
    labelled = [
        dict(user_simulator="scripted-stand-in", summarizer="offline-contrast (stand-in)",
             config={"prompt_variant": "compact"}),
        dict(user_simulator="llm:gpt-4.1", summarizer="llm:gpt-4.1", config={"prompt_variant": "faithful"}),
        dict(env="sgcd_envs/AppWorld-v0", split="fixture", user_simulator="none (env has no user)"),
        dict(config={"world": "fixture"}),
    ]
    with ResultStore(db) as store:
        ids = [store.start_run(**{"method": "sgcd", "env": "sgcd_envs/Tau3Airline-v0", **run}) for run in labelled]
        store.record_evaluation(ids[0], 0, make_episodes(3), wall_s=1, tokens=1)
    as_written_by_version(db, 2)  # stand-ins only in the labels
    with ResultStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [store.run(i).stand_ins for i in ids] == [
            StandIns(user=True, summarizer=True, prompt=True), StandIns(), StandIns(world=True), StandIns(world=True)]
        assert store.run(ids[0]).user_simulator == "scripted-stand-in"  # the labels are kept as they were
        assert store.episode_count(store.latest_evaluation(ids[0]).id) == 3


def test_a_version_3_store_gets_an_empty_steps_table(tmp_path):
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        run_id = store.start_run(method="sgcd", env="e", stand_ins=StandIns(user=True))
        store.record_evaluation(run_id, 4, make_episodes(3), wall_s=1, tokens=1)
    as_written_by_version(db, 3)
    con = sqlite3.connect(db)
    assert con.execute("SELECT name FROM sqlite_master WHERE name = 'train_steps'").fetchone() is None
    con.close()
    with ResultStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert store.steps(run_id) == []  # stored before v4: no curves, nothing invented
        assert store.run(run_id).stand_ins == StandIns(user=True)  # v3's columns kept as they were
        assert store.episode_count(store.latest_evaluation(run_id).id) == 3
        step = TrainStep(step=1, reward_mean=0.5, action_success=0.0, no_write_success=None, write_calls=2.0,
                         episodes=4, updated=True, loss=0.1, groups_kept=1, groups_drawn=2, step_s=1.0)
        store.record_step(run_id, step)  # the migrated store takes steps like a new one
        assert store.steps(run_id) == [step]


def test_a_version_4_store_gets_run_owners_and_leaves_its_old_runs_alone(tmp_path):
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        run_id = store.start_run(method="grpo", env="e")  # still running when the old version stopped
    as_written_by_version(db, 4)
    with ResultStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.dead_on_open == []  # no owner recorded: nobody can tell it died
        assert store.run(run_id).status == "running"


def test_a_version_5_store_keeps_its_steps_with_no_probe_and_takes_probed_ones(tmp_path):
    db = tmp_path / "results.sqlite"
    old = TrainStep(step=1, reward_mean=0.5, action_success=0.0, no_write_success=None, write_calls=2.0,
                    episodes=4, updated=True, loss=0.1, groups_kept=1, groups_drawn=2, step_s=1.0)
    with ResultStore(db) as store:
        run_id = store.start_run(method="grpo", env="e")
        store.record_step(run_id, old)
    as_written_by_version(db, 5)
    with ResultStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert store.steps(run_id) == [old]  # stored before v6: no probe, nothing invented
        probed = dataclasses.replace(old, step=2, probe_reward=0.3, probe_action_success=0.2,
                                     probe_no_write_success=None, probe_write_calls=0.4)
        store.record_step(run_id, probed)
        assert store.steps(run_id) == [old, probed]


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_budget_setting_is_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv(BUDGET_ENV, value)
    with pytest.raises(StoreError, match=f"{BUDGET_ENV}.*seconds.*{value!r}"):
        ResultStore(tmp_path / "results.sqlite")


# ----------------------------------------------------------------- damaged files


def _written_store(db: Path) -> bytes:
    """A closed (fully checkpointed) store with a few evaluations; its bytes."""
    with ResultStore(db) as store:
        run_id = store.start_run(method="grpo", env="e")
        for step in range(10):
            store.record_evaluation(run_id, step, make_episodes(60), wall_s=1, tokens=1)
    assert not db.with_name(db.name + "-wal").exists()
    return db.read_bytes()


def _damage(db: Path, kind: str) -> None:
    if kind == "garbage":
        db.write_bytes(random.Random(0).randbytes(40_000))
    elif kind == "text":
        db.write_text("method,env,pass@1\ngrpo,e,0.5\n")
    elif kind == "bad_header":
        db.write_bytes(b"SQLite format 3\x00" + bytes(4_080))
    else:  # truncated to a fraction of its length
        data = _written_store(db)
        db.write_bytes(data[: int(len(data) * float(kind.split("_")[1]))])


@pytest.mark.parametrize("kind", ["garbage", "text", "bad_header", "truncated_0.3", "truncated_0.99"])
def test_a_damaged_store_is_one_line_and_left_untouched(tmp_path, kind):
    db = tmp_path / "results.sqlite"
    _damage(db, kind)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for _ in range(2):  # the same answer every time, and still untouched
        try:
            ResultStore(db).close()
        except Exception as err:  # noqa: BLE001 - the type is checked below
            error = err
        else:
            pytest.fail(f"{kind}: the damaged store opened without an error")
        assert type(error).__name__ == "StoreCorruptError", f"{type(error).__name__}: {error}"
        assert isinstance(error, StoreError)
        message = str(error)
        assert "\n" not in message, message
        assert str(db) in message and "untouched" in message and "move" in message, message
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_notices_name_what_the_sidecars_did(tmp_path):
    from leaderboards.store import PendingMerge, ResultStore

    store = ResultStore(tmp_path / "results.sqlite")
    assert store.open_notices() == [] and store.kept_notice() is None
    store.merged_on_open = PendingMerge(merged=2, left=1, rejected=1)
    store.kept_pending = [tmp_path / "a.json"]
    lines = store.open_notices()
    assert len(lines) == 3 and "merged 2 result(s)" in lines[0] and "1 kept result(s) still wait" in lines[1]
    assert "*.rejected" in lines[2]
    assert "1 result(s) kept in" in store.kept_notice()
