"""Learning curves of stored training steps: the runs chosen, the terminal plot, the PNG."""

from __future__ import annotations

import struct

import pytest

from leaderboards.curves import (Curve, NoStepsError, default_run_ids, run_curves, series, terminal_plot, title,
                                 write_png)
from leaderboards.store import ResultStore, StoreError, TrainStep

ENV = "sgcd_envs/Tau3Airline-v0"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def steps(n: int, slope: float) -> tuple[TrainStep, ...]:
    """``n`` steps whose rewards rise with ``slope``; every third step drew no action task."""
    return tuple(
        TrainStep(step=i, reward_mean=min(1.0, slope * i), action_success=None if i % 3 == 0 else min(1.0, slope * i),
                  no_write_success=0.5, write_calls=2.0 - slope * i, episodes=8, updated=i % 2 == 0,
                  loss=0.1 if i % 2 == 0 else None, groups_kept=i % 2, groups_drawn=2, step_s=1.5)
        for i in range(1, n + 1)
    )


@pytest.fixture
def curves() -> list[Curve]:
    return [Curve(3, "grpo", ENV, 0, steps(12, 0.05)), Curve(4, "sgcd", ENV, 0, steps(12, 0.08)),
            Curve(5, "sdpo", ENV, 1, steps(12, 0.01))]


def test_series_leaves_out_steps_without_the_metric(curves):
    xs, ys = series(curves[0], "action_success")
    assert xs == [1, 2, 4, 5, 7, 8, 10, 11] and ys == pytest.approx([0.05 * x for x in xs])
    assert series(curves[0], "reward_mean")[0] == list(range(1, 13))
    with pytest.raises(ValueError, match="unknown metric 'loss'"):
        series(curves[0], "loss")


def test_title_names_the_env_and_the_seeds(curves):
    assert title(curves) == f"learning curves · {ENV} · seeds 0, 1"
    assert title(curves[:1]) == f"learning curves · {ENV} · seed 0"


def test_terminal_plot_has_a_panel_per_metric_and_each_run_labelled(curves):
    text = terminal_plot(curves, color=False)
    lines = text.splitlines()
    assert len(lines) <= 16 and max(len(line) for line in lines) <= 100
    assert "\x1b[" not in text  # no ANSI codes when asked for none
    for panel in ("train reward", "action success", "no-write success", "writes / episode"):
        assert panel in text
    for label in ("grpo s0 #3", "sgcd s0 #4", "sdpo s1 #5"):
        assert label in lines[-1]
    assert lines[0] == title(curves)
    assert "\x1b[" in terminal_plot(curves, color=True)


def test_terminal_plot_of_one_step_without_success_rates():
    lone = TrainStep(step=1, reward_mean=0.0, action_success=None, no_write_success=None, write_calls=0.0,
                     episodes=2, updated=False, loss=None, groups_kept=0, groups_drawn=1, step_s=0.2)
    text = terminal_plot([Curve(1, "grpo", ENV, None, (lone,))], width=80, color=False)
    assert "grpo #1" in text and max(len(line) for line in text.splitlines()) <= 80


def test_write_png_writes_a_real_png(curves, tmp_path):
    path = write_png(curves, tmp_path / "curves.png")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk: one row of panels, 14 × 4.2 in at 100 dpi
    assert (width, height) == (1400, 420)
    assert len(data) > 20_000  # lines, labels and a legend, not a blank canvas


def test_write_png_into_a_missing_folder_raises_oserror(curves, tmp_path):
    with pytest.raises(OSError):
        write_png(curves, tmp_path / "missing" / "curves.png")


def test_run_curves_and_default_runs_from_a_store(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        def trained(method: str, env: str = ENV, n: int = 3) -> int:
            run_id = store.start_run(method=method, env=env, seed=0)
            for s in steps(n, 0.1):
                store.record_step(run_id, s)
            return run_id

        old_grpo, sgcd, other_env = trained("grpo"), trained("sgcd"), trained("grpo", env="sgcd_envs/AppWorld-v0")
        baseline = store.start_run(method="do-nothing", env=ENV)
        assert default_run_ids(store) == [other_env]  # the env of the newest trained run
        new_grpo = trained("grpo")
        assert default_run_ids(store) == [new_grpo, sgcd]  # newest run of each method, by method
        [curve] = run_curves(store, [old_grpo])
        assert (curve.label, curve.env, len(curve.steps)) == (f"grpo s0 #{old_grpo}", ENV, 3)
        with pytest.raises(NoStepsError, match=f"run {baseline} \\(do-nothing on {ENV}\\) has no stored training steps"):
            run_curves(store, [sgcd, baseline])
        with pytest.raises(StoreError, match="no run with id 999"):
            run_curves(store, [999])


def test_default_runs_of_a_store_without_steps(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.start_run(method="eval", env=ENV)
        with pytest.raises(NoStepsError, match="no run in .* has stored training steps"):
            default_run_ids(store)
