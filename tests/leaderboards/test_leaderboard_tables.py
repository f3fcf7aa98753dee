"""Leaderboard rows, rich rendering and exports, from a real store."""

from __future__ import annotations

import csv
import json

import pytest
from rich.console import Console

from leaderboards.collapse import COLLAPSE_FLAG
from leaderboards.store import EpisodeResult, ResultStore, StandIns
from leaderboards.tables import export, leaderboard_rows, print_leaderboard, stand_in_notes

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
    for cell in ("0.600 (n=3)", "0.533", "0.500", "0.333", "1.000", "1.20", "250.0", "20.0"):
        assert cell in grpo_line, (cell, grpo_line)
    assert grpo_line.rstrip("│ ").endswith("U")  # note code for "stand-in user"
    base_line = next(ln for ln in lines if "│ baseline" in ln)
    assert "do-nothing" in base_line and "0.400 (n=3)" in base_line
    sdpo_line = next(ln for ln in lines if "│ ours" in ln and "sdpo" in ln)
    assert "⚠ collapse" in sdpo_line
    refs = [ln for ln in lines if "│ reference" in ln]
    assert len(refs) == 3 + 4
    assert all(ln.rstrip("│ ").endswith("R") and "Qwen3.5-4B" in ln for ln in refs)
    assert "[R] reference rows: arXiv 2606.12634 (SGCD paper), reported, not measured here" in text
    assert any("0.583" in ln for ln in refs) and any("45.6" in ln for ln in refs)
    assert "[U] stand-in user: scripted stand-in user simulator, not the τ³ LLM user: not τ³ benchmark numbers" in text
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
    assert "pass@1 (n)" in text and "0.600 (n=3)" in text and "⚠ collapse" in text


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
    assert "not τ³ benchmark numbers" in j["legend"]["stand-in user"]
    ref = [r for r in rows if r["kind"] == "reference"]
    assert all(r["source"].startswith("arXiv 2606.12634") for r in ref)

    with open(export(store, "csv", tmp_path / "lb.csv"), newline="") as f:
        crow = list(csv.DictReader(f))
    assert len(crow) == len(rows)
    assert [r["kind"] for r in crow] == [r["kind"] for r in rows]
    sdpo = next(r for r in crow if r["kind"] == "run" and r["method"] == "sdpo")
    assert sdpo["flags"].startswith(COLLAPSE_FLAG) and float(sdpo["action_pass"]) == 0.0

    md = export(store, "md", tmp_path / "out" / "lb.md").read_text()
    assert "### τ³-airline leaderboard" in md and "| *reference* | *sgcd* |" in md
    assert "| baseline | do-nothing |" in md and "0.600 (n=3)" in md

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
    header = next(ln for ln in text.splitlines() if "pass@1 (n)" in ln)
    assert "user sim" not in header and "summarizer" not in header and "seed" not in header
    assert "model" in header  # differs from the reference rows' Qwen3.5-4B, so it stays
    assert ("measured rows share: seed 0 · user sim scripted (stand-in) · summarizer offline-contrast"
            in text.replace("\n", " ").replace("  ", " "))
    assert "[P] compact prompt: compact prompt variant" in text and "[S] offline summarizer" in text
    assert "no do-nothing baseline run stored for this env" in text
