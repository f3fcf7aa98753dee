"""Leaderboard rows, rich rendering and exports, from a real store."""

from __future__ import annotations

import csv
import json

import pytest
from rich.console import Console

from leaderboards.collapse import COLLAPSE_FLAG
from leaderboards.store import EpisodeResult, ResultStore, StandIns
from leaderboards.tables import export, leaderboard_rows, print_leaderboard, stand_in_notes, suite_rows

TAU = "sgcd_envs/Tau3Airline-v0"
APPWORLD = "sgcd_envs/AppWorld-v0"
ACTION_TASKS = [str(i) for i in range(6)]
NO_WRITE_TASKS = [str(i) for i in range(6, 10)]


def tau_episodes(action_passes: dict[str, int], no_write_passes: int, trials: int = 3, writes: int = 2):
    """action_passes: task → passed trials; every no-write task passes ``no_write_passes`` trials."""
    out = []
    for t in ACTION_TASKS:
        out += [EpisodeResult(t, r, "action", float(r < action_passes.get(t, 0)), write_calls=writes)
                for r in range(trials)]
    for t in NO_WRITE_TASKS:
        out += [EpisodeResult(t, r, "no_write", float(r < no_write_passes)) for r in range(trials)]
    return out


@pytest.fixture
def store(tmp_path):
    s = ResultStore(tmp_path / "lb.sqlite")
    common = dict(env=TAU, split="test", user_simulator="scripted (stand-in)", stand_ins=StandIns(user=True), seed=0)
    base = s.start_run(method="do-nothing", **common)
    s.record_evaluation(base, 0, tau_episodes({}, 3, writes=0), wall_s=2.0, tokens=0)
    s.finish_run(base)
    grpo = s.start_run(method="grpo", model="SmolLM2-135M-Instruct", summarizer="-", **common)
    s.record_evaluation(grpo, 0, tau_episodes({}, 3), wall_s=10, tokens=100)  # older eval: ignored
    s.record_evaluation(grpo, 8, tau_episodes({"0": 3, "1": 2, "2": 1}, 3), wall_s=20.0, tokens=5000)
    s.finish_run(grpo)
    sdpo = s.start_run(method="sdpo", model="SmolLM2-135M-Instruct", summarizer="-", **common)
    s.record_evaluation(sdpo, 8, tau_episodes({}, 2, writes=0), wall_s=16.0, tokens=2000)
    s.flag_run(sdpo, COLLAPSE_FLAG, "write calls/episode 1.20 → 0.00 while headline holds")
    s.finish_run(sdpo)
    llm = s.start_run(method="sgcd", env=TAU, split="test", user_simulator="llm:gpt-4.1",
                      model="Qwen3-0.6B", summarizer="llm:gpt-4.1", seed=1)
    s.record_evaluation(llm, 4, tau_episodes({"0": 1}, 3, trials=1), wall_s=5.0, tokens=500)
    aw = s.start_run(method="sgcd", env=APPWORLD, split="dev", model="m", stand_ins=StandIns(world=True))
    s.record_evaluation(aw, 1, [EpisodeResult("sa_1", 0, None, 1.0, write_calls=1),
                                EpisodeResult("sa_2", 0, None, 1.0),
                                EpisodeResult("sb_1", 0, None, 0.0)], wall_s=3.0, tokens=30)
    s.start_run(method="grpo", env=TAU)  # no evaluation: not listed
    yield s
    s.close()


def test_rows_are_computed_from_the_latest_evaluation(store):
    tables = leaderboard_rows(store)
    assert list(tables) == [TAU, APPWORLD]
    rows = tables[TAU]
    assert [(r.kind, r.method) for r in rows] == [
        ("baseline", "do-nothing"), ("run", "grpo"), ("run", "sgcd"), ("run", "sdpo"),
        ("reference", "grpo"), ("reference", "sgcd"), ("reference", "sdpo")]
    base, grpo, sgcd, sdpo = rows[:4]
    assert base.pass_at_1 == pytest.approx(0.4) and base.action_pass == 0.0 and base.no_write_pass == 1.0
    # grpo: action tasks 3/3, 2/3, 1/3 passed, 3 at 0 → (1 + 2/3 + 1/3)/6; pass@1 = (2 + 4)/10
    assert grpo.step == 8 and grpo.trials == 3
    assert grpo.action_pass == pytest.approx(2 / 6)
    assert grpo.pass_at_1 == pytest.approx(0.6)
    # pass^2: task0 1, task1 C(2,2)/C(3,2)=1/3, no-write 4×1 → (1 + 1/3 + 4)/10
    assert grpo.pass_hat_k[2] == pytest.approx((1 + 1 / 3 + 4) / 10)
    assert grpo.pass_hat_k[3] == pytest.approx(0.5)
    assert grpo.write_calls_per_episode == pytest.approx(18 * 2 / 30)
    assert grpo.tokens_per_s == 250.0 and grpo.wall_s == 20.0
    assert sdpo.no_write_pass == pytest.approx(2 / 3) and sdpo.flags
    assert sgcd.trials == 1 and sgcd.pass_hat_k == {}
    assert rows[6].action_pass == 0.0 and rows[6].pass_at_1 == 0.317
    aw = tables[APPWORLD]
    assert aw[0].tgc == pytest.approx(200 / 3) and aw[0].sgc == pytest.approx(50.0)
    assert aw[0].notes == ("fixture world",)
    assert [(r.split, r.tgc) for r in aw[1:]] == [
        ("test_normal", 42.9), ("test_normal", 45.6), ("test_challenge", 24.7), ("test_challenge", 27.0)]


def test_stand_in_notes(store):
    notes = {r.id: stand_in_notes(r) for r in store.runs()}
    assert notes[1] == ("stand-in user",)
    assert notes[4] == ()  # LLM user, LLM summarizer
    assert notes[5] == ("fixture world",)


def test_notes_come_from_the_typed_stand_ins_not_the_labels(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as s:
        labelled = s.start_run(method="sgcd", env=TAU, split="fixture", user_simulator="scripted-stand-in",
                               summarizer="offline-contrast (stand-in)", config={"prompt_variant": "compact"})
        typed = s.start_run(method="sgcd", env=TAU, user_simulator="llm:x",
                            stand_ins=StandIns(user=True, summarizer=True, prompt=True, world=True))
        assert stand_in_notes(s.run(labelled)) == ()
        assert stand_in_notes(s.run(typed)) == ("stand-in user", "fixture world", "compact prompt",
                                                "offline summarizer")


def test_terminal_table_shows_values_labels_and_captions(store):
    console = Console(record=True, width=260)
    print_leaderboard(store, console=console)
    text = console.export_text()
    assert "τ³-airline leaderboard (sgcd_envs/Tau3Airline-v0)" in text
    assert "AppWorld leaderboard (sgcd_envs/AppWorld-v0)" in text
    lines = text.splitlines()
    grpo_line = next(ln for ln in lines if "│ ours" in ln and "grpo" in ln)
    for cell in ("│ #2 ", "│ 10×3 │", "│ 8 │", "0.600", "0.533", "0.500", "0.333", "1.000", "1.20", "250.0",
                 "20.0"):
        assert cell in " ".join(grpo_line.split()), (cell, grpo_line)
    assert "(n=" not in text
    assert grpo_line.rstrip("│ ").endswith("U")  # note code for "stand-in user"
    base_line = next(ln for ln in lines if "│ baseline" in ln)
    assert "do-nothing" in base_line and "0.400" in base_line
    base_cells = " ".join(base_line.split())
    assert "│ #1 │ do-nothing │" in base_cells and "│ 10×3 │ — │" in base_cells
    sdpo_line = next(ln for ln in lines if "│ ours" in ln and "sdpo" in ln)
    assert "⚠ collapse" in sdpo_line
    refs = [ln for ln in lines if "│ reference" in ln]
    assert len(refs) == 3 + 4
    assert all(ln.rstrip("│ ").endswith("R") and "Qwen3.5-4B" in ln for ln in refs)
    assert all("│ — │ — │ — │" in " ".join(ln.split()) for ln in refs)  # no run, tasks×trials, steps
    assert "[R] reference rows: arXiv 2606.12634 (SGCD paper), reported, not measured here" in text
    assert any("0.583" in ln for ln in refs) and any("45.6" in ln for ln in refs)
    assert "[U] stand-in user: scripted stand-in user simulator, not the benchmark's LLM user: not benchmark numbers" in text
    assert "[F] fixture world: a small fixture world built for tests: not AppWorld benchmark numbers" in text
    assert "arXiv 2606.12634" in text
    assert "⚠ run 3 (sdpo): write calls/episode 1.20 → 0.00" in text


def test_full_notes_and_narrow_terminal(store):
    wide = Console(record=True, width=400)
    print_leaderboard(store, TAU, console=wide, compact=False)
    text = wide.export_text()
    sdpo_line = next(ln for ln in text.splitlines() if "│ ours" in ln and "sdpo" in ln)
    assert "stand-in user" in sdpo_line and "⚠ collapse" in sdpo_line
    assert sum("reported, not measured here" in ln for ln in text.splitlines() if "│ reference" in ln) == 3

    narrow = Console(record=True, width=100)
    print_leaderboard(store, TAU, console=narrow)
    text = narrow.export_text()
    assert max(len(ln) for ln in text.splitlines()) <= 100
    assert "narrow terminal: hidden columns wall s, tok/s" in text
    header = next(ln for ln in text.splitlines() if "pass@1" in ln)
    for kept in ("run", "tasks×trials", "steps", "pass@1", "flags", "notes"):
        assert kept in header, (kept, header)
    assert "0.600" in text and "10×3" in text and "⚠ collapse" in text


def test_empty_store_and_env_filter(tmp_path, store):
    console = Console(record=True, width=200)
    with ResultStore(tmp_path / "empty.sqlite") as empty:
        print_leaderboard(empty, console=console)
        # reference rows still shown for a known env with no runs
        assert [r.kind for r in leaderboard_rows(empty, TAU)[TAU]] == ["reference"] * 3
    assert "No evaluated runs" in console.export_text()
    assert list(leaderboard_rows(store, APPWORLD)) == [APPWORLD]
    assert leaderboard_rows(store, TAU, include_reference=False)[TAU][-1].kind == "run"


def test_exports_parse_back(store, tmp_path):
    j = json.loads(export(store, "json", tmp_path / "lb.json").read_text())
    rows = j["rows"]
    assert len(rows) == 7 + 5
    grpo = next(r for r in rows if r["kind"] == "run" and r["method"] == "grpo")
    assert grpo["pass_at_1"] == pytest.approx(0.6) and grpo["pass_hat_3"] == pytest.approx(0.5)
    assert grpo["notes"] == "stand-in user" and grpo["trials"] == 3
    assert (grpo["run_id"], grpo["n_tasks"], grpo["trials_max"], grpo["tasks_x_trials"], grpo["steps"]) == (
        2, 10, 3, "10×3", 8)
    base = next(r for r in rows if r["kind"] == "baseline")
    assert base["steps"] is None and base["step"] == 0 and base["tasks_x_trials"] == "10×3"
    assert "not benchmark numbers" in j["legend"]["stand-in user"]
    ref = [r for r in rows if r["kind"] == "reference"]
    assert all(r["source"].startswith("arXiv 2606.12634") for r in ref)
    assert all(r["run_id"] is None and r["steps"] is None and r["tasks_x_trials"] == "—" for r in ref)

    with open(export(store, "csv", tmp_path / "lb.csv"), newline="") as f:
        crow = list(csv.DictReader(f))
    assert len(crow) == len(rows)
    assert [r["kind"] for r in crow] == [r["kind"] for r in rows]
    sdpo = next(r for r in crow if r["kind"] == "run" and r["method"] == "sdpo")
    assert sdpo["flags"].startswith(COLLAPSE_FLAG) and float(sdpo["action_pass"]) == 0.0

    md = export(store, "md", tmp_path / "out" / "lb.md").read_text()
    assert "### τ³-airline leaderboard" in md and "| *reference* | *—* | *sgcd* |" in md
    assert "| baseline | #1 | do-nothing |" in md and "| 10×3 | 8 | 0.600 |" in md

    with pytest.raises(ValueError, match="Unknown export format 'jsno'.*Did you mean 'json'"):
        export(store, "jsno", tmp_path / "x")


def test_compact_table_moves_shared_settings_to_the_caption(tmp_path):
    with ResultStore(tmp_path / "c.sqlite") as s:
        for method in ("grpo", "sgcd"):
            rid = s.start_run(method=method, env=TAU, split="train", model="SmolLM2-135M-Instruct",
                              user_simulator="scripted (stand-in)", summarizer="offline-contrast", seed=0,
                              config={"prompt_variant": "compact"},
                              stand_ins=StandIns(user=True, summarizer=True, prompt=True))
            s.record_evaluation(rid, 2, tau_episodes({"0": 1}, 1, trials=1), wall_s=1.0, tokens=10)
        console = Console(record=True, width=160)
        print_leaderboard(s, console=console)
    text = console.export_text()
    header = next(ln for ln in text.splitlines() if "pass@1" in ln)
    assert "user sim" not in header and "summarizer" not in header and "seed" not in header
    assert "model" in header  # differs from the reference rows' Qwen3.5-4B, so it stays
    assert ("measured rows share: seed 0 · user sim scripted (stand-in) · summarizer offline-contrast"
            in text.replace("\n", " ").replace("  ", " "))
    assert "[P] compact prompt: compact prompt variant" in text and "[S] offline summarizer" in text
    assert "no do-nothing baseline run stored for this env" in text


def _cells(line: str) -> list[str]:
    """The cells of one rendered table line."""
    line = line.replace("┃", "│").strip().strip("│")
    return [c.strip() for c in line.split("│")]


@pytest.fixture
def two_grpo_runs(tmp_path):
    """Two grpo runs that differ only in steps trained and tasks × trials evaluated (issue 18),
    plus an eval-only run of the same model."""
    with ResultStore(tmp_path / "two.sqlite") as s:
        common = dict(env=TAU, split="test", model="SmolLM2-135M-Instruct", user_simulator="scripted (stand-in)",
                      stand_ins=StandIns(user=True), seed=0)
        long = s.start_run(method="grpo", config={"eval_temperature": 1.0, "eval_trials": 3}, **common)
        s.record_evaluation(long, 20, tau_episodes({"0": 3, "1": 2}, 3), wall_s=9.0, tokens=900)
        short = s.start_run(method="grpo", config={"eval_temperature": 0.0, "eval_trials": 1}, **common)
        s.record_evaluation(short, 2, [EpisodeResult("0", 0, "action", 1.0), EpisodeResult("6", 0, "no_write", 1.0)],
                            wall_s=1.0, tokens=50)
        only = s.start_run(method="eval", config={"eval_temperature": 0.0, "eval_trials": 1}, **common)
        s.record_evaluation(only, 0, [EpisodeResult("0", 0, "action", 0.0), EpisodeResult("6", 0, "no_write", 1.0)],
                            wall_s=1.0, tokens=50)
        yield s


def test_two_grpo_runs_show_their_run_tasks_trials_and_steps(two_grpo_runs):
    rows = leaderboard_rows(two_grpo_runs)[TAU]
    short, long, only = rows[:3]  # by pass@1: 1.0, 0.567, 0.5
    assert (short.run_id, short.n_tasks, short.trials, short.steps) == (2, 2, 1, 2)
    assert (long.run_id, long.n_tasks, long.trials, long.steps) == (1, 10, 3, 20)
    assert (only.method, only.step, only.steps) == ("eval", 0, None)
    assert not any(r.greedy_trials for r in rows)

    console = Console(record=True, width=160)
    print_leaderboard(two_grpo_runs, console=console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 160
    assert "narrow terminal: hidden columns wall s (widen" in text and "(n=" not in text  # only wall s goes
    header = _cells(next(ln for ln in lines if "pass@1" in ln))
    assert header[:5] == ["row", "run", "method", "model", "tasks×trials"] and header[5:7] == ["steps", "pass@1"]
    by_run = {_cells(ln)[1]: _cells(ln) for ln in lines if ln.startswith("│")}
    assert by_run["#1"][2:7] == ["grpo", "SmolLM2-135M-Instruct", "10×3", "20", "0.567"]
    assert by_run["#2"][2:7] == ["grpo", "SmolLM2-135M-Instruct", "2×1", "2", "1.000"]
    assert by_run["#3"][2:7] == ["eval", "SmolLM2-135M-Instruct", "2×1", "—", "0.500"]
    refs = [c for c in (_cells(ln) for ln in lines if ln.startswith("│ reference"))]
    assert len(refs) == 3 and all(r[1] == "—" and r[4] == "—" and r[5] == "—" for r in refs)


def test_exports_carry_run_tasks_trials_and_steps(two_grpo_runs, tmp_path):
    rows = json.loads(export(two_grpo_runs, "json", tmp_path / "two.json").read_text())["rows"]
    got = [(r["run_id"], r["method"], r["n_tasks"], r["trials"], r["tasks_x_trials"], r["steps"], r["greedy_trials"])
           for r in rows if r["kind"] == "run"]
    assert got == [(2, "grpo", 2, 1, "2×1", 2, False), (1, "grpo", 10, 3, "10×3", 20, False),
                   (3, "eval", 2, 1, "2×1", None, False)]
    md = export(two_grpo_runs, "md", tmp_path / "two.md").read_text()
    assert "| tasks×trials | steps | pass@1 |" in md and "| #1 | grpo |" in md and "| 10×3 | 20 | 0.567 |" in md


def test_unequal_trials_show_a_range(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as s:
        rid = s.start_run(method="grpo", env=TAU)
        s.record_evaluation(rid, 3, [EpisodeResult("0", t, "action", 1.0) for t in range(3)]
                            + [EpisodeResult("6", 0, "no_write", 1.0)], wall_s=1.0, tokens=1)
        (row,) = leaderboard_rows(s, include_reference=False)[TAU]
        assert (row.trials, row.trials_max) == (1, 3)
        console = Console(record=True, width=200)
        print_leaderboard(s, console=console, include_reference=False)
    assert "2×1-3" in console.export_text()


def test_greedy_trials_are_flagged_not_silent(tmp_path):
    """A run stored with several trials per task at eval temperature 0 (identical greedy trials)
    keeps its numbers but marks pass^k, notes it and explains it; sampled runs, single trials and
    runs that stored no eval temperature are not marked."""
    with ResultStore(tmp_path / "g.sqlite") as s:
        for temperature, trials in ((0.0, 3), (1.0, 3), (0.0, 1), (None, 3)):
            config = {} if temperature is None else {"eval_temperature": temperature, "eval_trials": trials}
            rid = s.start_run(method="grpo", env=TAU, split="test", model="m", config=config)
            s.record_evaluation(rid, 4, tau_episodes({"0": trials}, trials, trials=trials), wall_s=1.0, tokens=1)
        rows = {r.run_id: r for r in leaderboard_rows(s, include_reference=False)[TAU]}
        assert [rows[i].greedy_trials for i in (1, 2, 3, 4)] == [True, False, False, False]
        assert rows[1].notes == ("greedy trials",) and rows[1].pass_hat_k[3] == pytest.approx(rows[1].pass_at_1)
        console = Console(record=True, width=200)
        print_leaderboard(s, console=console, include_reference=False)
        exported = json.loads(export(s, "json", tmp_path / "g.json").read_text())
    text = console.export_text()
    lines = {_cells(ln)[1]: _cells(ln) for ln in text.splitlines() if ln.startswith("│ ours")}
    header = _cells(next(ln for ln in text.splitlines() if "pass@1" in ln))
    p2, p3 = header.index("pass^2"), header.index("pass^3")
    assert lines["#1"][p2].endswith(" G") and lines["#1"][p3].endswith(" G") and lines["#1"][-1] == "G"
    assert not any(lines[i][p2].endswith("G") or lines[i][-1] == "G" for i in ("#2", "#4"))
    assert "[G] greedy trials: trials at eval temperature 0 repeat one greedy trial" in text
    assert "(run #1)" in text
    flagged = [r["run_id"] for r in exported["rows"] if r["greedy_trials"]]
    assert flagged == [1] and "greedy trials" in exported["legend"]


RETAIL = "sgcd_envs/Tau2Retail-v0"


def test_the_tau_family_overall_averages_each_method_and_model_over_the_domains(tmp_path):
    """Runs of one method and model on τ³-airline and τ²-retail get a τ-family row: the domains'
    mean pass@1 (newest run per domain); a method run on one domain only gets none."""
    with ResultStore(tmp_path / "lb.sqlite") as s:
        def run(env, method, passes, model="m", user=True):
            run_id = s.start_run(method=method, env=env, split="test", model=model, user_simulator="scripted",
                                 stand_ins=StandIns(user=user), preset="gpu")
            s.record_evaluation(run_id, 4, tau_episodes(passes, 1, trials=1), wall_s=1.0, tokens=10)
            return run_id

        run(TAU, "grpo", {})                         # older airline grpo: replaced by the newer one
        airline = run(TAU, "grpo", {"0": 1, "1": 1})  # 2/6 action + 4/4 no-write: 0.6
        retail = run(RETAIL, "grpo", {})              # 0/6 + 4/4: 0.4
        run(TAU, "sgcd", {"0": 1})                    # one domain only: no overall row
        run(TAU, "grpo", {"0": 1}, model="other")     # another model: its own key, one domain only
        tables = leaderboard_rows(s)
        ((suite, (envs, rows)),) = suite_rows(tables).items()
        assert suite == "τ-family" and envs == [TAU, RETAIL]
        ((row),) = rows
        assert (row.method, row.model) == ("grpo", "m")
        assert {env: r.run_id for env, r in row.domains.items()} == {TAU: airline, RETAIL: retail}
        assert row.overall == pytest.approx((0.6 + 0.4) / 2) and row.notes == ("stand-in user",)
        console = Console(record=True, width=200)
        print_leaderboard(s, console=console)
        text = console.export_text()
        assert "τ-family overall leaderboard" in text and "0.500" in text and f"0.600 (#{airline})" in text
        assert "each domain weighing the same" in text
        md = export(s, "markdown", tmp_path / "lb.md").read_text()
        assert "### τ-family overall leaderboard" in md and f"| 0.600 (#{airline}) | 0.400 (#{retail}) | 0.500 |" in md
        assert not suite_rows({TAU: tables[TAU]})  # one domain: no suite table
