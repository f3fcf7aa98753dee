"""Result store: round trip, atomicity, schema versioning, crash safety with real processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaderboards.store import (
    SCHEMA_VERSION,
    EpisodeResult,
    ResultStore,
    SchemaVersionError,
    StandIns,
    StoreError,
    TrainStep,
)

WRITER = Path(__file__).with_name("store_writer.py")


def make_episodes(n: int, trial: int = 0) -> list[EpisodeResult]:
    return [
        EpisodeResult(f"task{j}", trial, "action" if j % 3 else "no_write", float(j % 2),
                      db_match=bool(j % 2), communicate_match=j % 5 != 0, write_calls=j % 3,
                      turns=j, termination="agent_stop" if j % 4 else "max_steps")
        for j in range(n)
    ]


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "res" / "results.sqlite") as s:
        yield s


def test_round_trip(store):
    run_id = store.start_run(method="sgcd", env="sgcd_envs/Tau3Airline-v0", split="test",
                             model="SmolLM2-135M-Instruct", user_simulator="scripted (stand-in)",
                             summarizer="offline", preset="cpu", seed=3, commit="abc123",
                             config={"lr": 1e-6, "G": 4, "nested": {"a": [1, 2]}})
    eps = make_episodes(12)
    eval_id = store.record_evaluation(run_id, 5, eps, wall_s=4.0, tokens=1000)
    run = store.run(run_id)
    assert (run.method, run.env, run.split, run.model, run.seed, run.commit, run.preset) == (
        "sgcd", "sgcd_envs/Tau3Airline-v0", "test", "SmolLM2-135M-Instruct", 3, "abc123", "cpu")
    assert run.config == {"lr": 1e-6, "G": 4, "nested": {"a": [1, 2]}}
    assert run.status == "running" and run.finished is None
    ev = store.latest_evaluation(run_id)
    assert (ev.id, ev.step, ev.split, ev.wall_s, ev.tokens, ev.n_episodes) == (eval_id, 5, "test", 4.0, 1000, 12)
    assert ev.tokens_per_s == 250.0
    assert sorted(store.episodes(eval_id), key=lambda e: e.turns) == eps
    store.finish_run(run_id, "finished")
    store.flag_run(run_id, "tool_use_collapse", "write calls 2.0 → 0.0")
    run = store.run(run_id)
    assert run.status == "finished" and run.finished is not None
    assert run.flags == {"tool_use_collapse": "write calls 2.0 → 0.0"}
    other = store.start_run(method="grpo", env="sgcd_envs/AppWorld-v0")
    assert [r.id for r in store.runs()] == [run_id, other]
    assert [r.id for r in store.runs("sgcd_envs/AppWorld-v0")] == [other]
    assert [r.id for r in store.runs(method="sgcd", status="finished")] == [run_id]
    assert store.latest_evaluation(other) is None


def test_reopen_keeps_data_and_wal_mode(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as s:
        rid = s.start_run(method="grpo", env="e")
        s.record_evaluation(rid, 0, make_episodes(3), wall_s=1, tokens=1)
    with ResultStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert len(s.episodes(s.latest_evaluation(rid).id)) == 3
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_record_leaves_no_partial_evaluation(store, exc):
    rid = store.start_run(method="grpo", env="e")
    good = store.record_evaluation(rid, 0, make_episodes(5), wall_s=1, tokens=1)

    class Bad(EpisodeResult):
        def __getattribute__(self, name):
            if name == "termination":
                raise exc("boom mid-record")
            return object.__getattribute__(self, name)

    eps = make_episodes(5) + [Bad("late", 0, "action", 0.0)] + make_episodes(9)[5:]
    with pytest.raises(exc, match="boom"):
        store.record_evaluation(rid, 1, eps, wall_s=1, tokens=1)
    assert [e.id for e in store.evaluations(rid)] == [good]
    total = store._conn.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
    assert total == 5  # none of the failed evaluation's first 5 episodes were kept
    # the store is still usable and the next evaluation commits normally
    nxt = store.record_evaluation(rid, 2, make_episodes(4), wall_s=1, tokens=1)
    assert store.episode_count(nxt) == 4


def test_bad_input_messages(store):
    with pytest.raises(StoreError, match="unknown field 'modle'.*Did you mean 'model'"):
        store.start_run(method="grpo", env="e", modle="x")
    with pytest.raises(StoreError, match="needs env="):
        store.start_run(method="grpo")
    with pytest.raises(StoreError, match="JSON-serialisable"):
        store.start_run(method="grpo", env="e", config={"f": object()})
    rid = store.start_run(method="grpo", env="e")
    with pytest.raises(StoreError, match="status must be one of running, finished, failed.*'failed'"):
        store.finish_run(rid, "faild")
    with pytest.raises(StoreError, match="no run with id 999"):
        store.record_evaluation(999, 0, make_episodes(1), wall_s=1, tokens=1)
    with pytest.raises(StoreError, match="repeats task_id='task0' trial=0"):
        store.record_evaluation(rid, 0, make_episodes(2) + make_episodes(1), wall_s=1, tokens=1)
    with pytest.raises(StoreError, match="at least one episode"):
        store.record_evaluation(rid, 0, [], wall_s=1, tokens=1)
    with pytest.raises(StoreError, match="category must be one of action, no_write.*'no_write'"):
        EpisodeResult("1", 0, "no-write", 1.0)
    with pytest.raises(StoreError, match="reward must be a finite number in \\[0, 1\\], got 1.5"):
        EpisodeResult("1", 0, None, 1.5)
    assert store.evaluations(rid) == []


def test_stand_ins_round_trip_and_are_checked(store):
    typed = store.start_run(method="sgcd", env="e", stand_ins=StandIns(user=True, world=True))
    plain = store.start_run(method="grpo", env="e")
    assert store.run(typed).stand_ins == StandIns(user=True, world=True)
    assert store.run(plain).stand_ins == StandIns()
    with pytest.raises(StoreError, match="stand_ins must be a StandIns, got dict"):
        store.start_run(method="grpo", env="e", stand_ins={"user": True})


def make_step(step: int, **changes) -> TrainStep:
    values = dict(step=step, reward_mean=0.25 * (step % 5), action_success=None if step % 2 else 0.5,
                  no_write_success=1.0, write_calls=1.5, episodes=8, updated=step % 3 != 0,
                  loss=None if step % 3 == 0 else -0.01 * step, groups_kept=step % 3, groups_drawn=4, step_s=2.5)
    return TrainStep(**{**values, **changes})


def test_training_steps_round_trip(store):
    run_id = store.start_run(method="grpo", env="e")
    other = store.start_run(method="sgcd", env="e")
    steps = [make_step(i) for i in (1, 2, 3)]
    for s in reversed(steps):  # read back by step, whatever the order recorded
        assert store.record_step(run_id, s) == s.step
    store.record_step(other, make_step(1, reward_mean=1.0))
    assert store.steps(run_id) == steps
    assert store.steps(other) == [make_step(1, reward_mean=1.0)]
    assert store.steps(store.start_run(method="eval", env="e")) == []
    back = store.steps(run_id)[2]
    assert back.updated is False and back.loss is None and back.action_success is None
    with pytest.raises(StoreError, match="already has a stored training step 2"):
        store.record_step(run_id, make_step(2))
    with pytest.raises(StoreError, match="no run with id 999"):
        store.record_step(999, make_step(1))
    with pytest.raises(StoreError, match="no run with id 999"):
        store.steps(999)
    with pytest.raises(StoreError, match="needs a TrainStep, got dict"):
        store.record_step(run_id, {"step": 4})
    assert len(store.steps(run_id)) == 3


@pytest.mark.parametrize("bad, message", [
    (dict(groups_kept=-1), "groups_kept must be an int >= 0"),
    (dict(action_success=1.5), "action_success must be a finite number in \\[0, 1\\] or None"),
    (dict(reward_mean=None), "reward_mean must be a finite number in \\[0, 1\\], got None"),
    (dict(write_calls=float("nan")), "write_calls must be a finite number >= 0"),
    (dict(updated=1), "updated must be a bool"),
    (dict(loss=float("inf")), "loss must be a finite number or None"),
])
def test_a_bad_training_step_is_refused(bad, message):
    with pytest.raises(StoreError, match=message):
        make_step(1, **bad)


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade sgcd-bench"):
        ResultStore(path)


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(SchemaVersionError, match="foreign database"):
        ResultStore(path)


# ----------------------------------------------------------------- real processes


def _spawn(db: Path, mode: str, n: int = 3) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WRITER), str(db), mode, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_until(proc: subprocess.Popen, prefix: str, timeout: float = 30.0) -> list[str]:
    """Lines from the writer up to and including the first starting with ``prefix``."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"writer exited early: {lines} {proc.stderr.read()}")
        lines.append(line.strip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no {prefix!r} line within {timeout}s: {lines}")


def _assert_intact(db: Path) -> dict[int, int]:
    """Every evaluation has exactly n_episodes rows; returns eval id → episode count."""
    with ResultStore(db) as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = {}
        for run in s.runs():
            for ev in s.evaluations(run.id):
                counts[ev.id] = s.episode_count(ev.id)
                assert counts[ev.id] == ev.n_episodes, f"evaluation {ev.id} is partial"
        orphans = s._conn.execute(
            "SELECT COUNT(*) FROM episodes WHERE evaluation_id NOT IN (SELECT id FROM evaluations)"
        ).fetchone()[0]
        assert orphans == 0
        return counts


def test_sigkill_inside_the_transaction_keeps_finished_evaluations(tmp_path):
    db = tmp_path / "kill.sqlite"
    proc = _spawn(db, "hang", 3)
    try:
        lines = _read_until(proc, "inside")  # the 4th evaluation's transaction is now open
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = {int(a): int(b) for _, a, b in (ln.split() for ln in lines if ln.startswith("done"))}
    assert len(done) == 3
    counts = _assert_intact(db)
    assert counts == done  # all finished ones readable, the killed one absent
    with ResultStore(db) as s:
        run = s.runs()[0]
        # killed, so it never closed its run: the next open finds its process gone and marks it
        assert run.status == "failed" and "died" in run.flags, (run.status, run.flags)
        assert f"process {proc.pid} ended without closing the run" in run.flags["died"]
        assert "3 evaluation(s) kept" in run.flags["died"]
        assert [e.step for e in s.evaluations(run.id)] == [0, 1, 2]
        # the store stays writable after the crash
        rid = s.start_run(method="grpo", env="e")
        s.record_evaluation(rid, 0, make_episodes(2), wall_s=1, tokens=1)


def test_sigkill_at_a_random_moment_of_a_write_loop(tmp_path):
    db = tmp_path / "loop.sqlite"
    proc = _spawn(db, "loop")
    try:
        _read_until(proc, "run")
        done_lines = []
        while len(done_lines) < 5:
            done_lines += [ln for ln in _read_until(proc, "done") if ln.startswith("done")]
        time.sleep(0.003 * (os.getpid() % 7))  # land anywhere in the next write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        rest = proc.stdout.read().split("\n")
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    done_lines += [ln for ln in rest if ln.startswith("done")]
    done = {int(a): int(b) for _, a, b in (ln.split() for ln in done_lines)}
    counts = _assert_intact(db)
    assert set(done) <= set(counts)
    assert all(counts[i] == n for i, n in done.items())
    assert len(counts) - len(done) <= 1  # at most one committed whose "done" line was lost


def test_reader_sees_only_whole_evaluations_while_a_writer_runs(tmp_path):
    db = tmp_path / "conc.sqlite"
    ResultStore(db).close()
    proc = _spawn(db, "loop")
    try:
        _read_until(proc, "done")
        seen_max, checks = 0, 0
        with ResultStore(db) as reader:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                for run in reader.runs():
                    evs = reader.evaluations(run.id)
                    for ev in evs:
                        assert reader.episode_count(ev.id) == ev.n_episodes
                        checks += 1
                    assert len(evs) >= seen_max
                    seen_max = len(evs)
        assert seen_max >= 2 and checks > seen_max  # the writer made progress while we read
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    _assert_intact(db)


def test_sigkill_mid_training_keeps_every_finished_step(tmp_path):
    db = tmp_path / "steps.sqlite"
    proc = _spawn(db, "steps", 3)
    try:
        lines = _read_until(proc, "step 3")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert [ln for ln in lines if ln.startswith("step")] == ["step 1", "step 2", "step 3"]
    with ResultStore(db) as s:
        [run] = s.runs()
        assert run.status == "failed" and "3 finished step(s)" in run.flags["died"]  # killed mid-run
        assert [st.step for st in s.steps(run.id)] == [1, 2, 3]
        assert [st.updated for st in s.steps(run.id)] == [True, False, True]


def test_several_processes_open_and_write_a_fresh_file_at_once(tmp_path):
    db = tmp_path / "fresh" / "many.sqlite"
    procs = [_spawn(db, "burst", 4) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.strip().endswith("ok")
    counts = _assert_intact(db)
    assert len(counts) == 12
    with ResultStore(db) as s:
        assert [r.status for r in s.runs()] == ["finished"] * 3


def test_leaderboards_imports_neither_torch_nor_rich_for_the_store():
    code = ("import sys, leaderboards; assert 'rich' not in sys.modules, 'rich'; "
            "import leaderboards.tables; bad = {'torch', 'numpy', 'pandas'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
