"""Learning curves through the real CLI: `compare --plot`, `sgcd-bench plot`, `leaderboard --plot`,
and their one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from leaderboards.store import ResultStore, TrainStep
from tests.cli.helpers import invoke, one_line_error, only_an_error_line, tiny_model_dir

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000


@pytest.fixture
def store_dir(tmp_path) -> tuple[Path, int, int]:
    """OUT with one trained run (two steps) and one evaluation-only run: (out, trained, eval)."""
    out = tmp_path / "runs"
    with ResultStore(out / "results.sqlite") as store:
        trained = store.start_run(method="grpo", env="sgcd_envs/Tau3Airline-v0", seed=0)
        for i in (1, 2):
            store.record_step(trained, TrainStep(step=i, reward_mean=0.5, action_success=None, no_write_success=1.0,
                                                 write_calls=0.0, episodes=4, updated=False, loss=None,
                                                 groups_kept=0, groups_drawn=2, step_s=0.5))
        evaluated = store.start_run(method="eval", env="sgcd_envs/Tau3Airline-v0", seed=0)
    return out, trained, evaluated


def test_plot_help():
    result = invoke("plot", "--help")
    assert result.exit_code == 0 and "--file" in result.output


def test_plot_redraws_a_stored_run(store_dir, tmp_path):
    out, trained, _ = store_dir
    result = invoke("plot", str(trained), "--out", str(out), "--file", str(tmp_path / "c.png"))
    assert result.exit_code == 0, result.output
    assert f"grpo s0 #{trained}" in result.output and "no-write success" in result.output
    assert is_png(tmp_path / "c.png")
    default = invoke("plot", "--out", str(out))  # the newest run of each method, into OUT/curves.png
    assert default.exit_code == 0, default.output
    assert is_png(out / "curves.png")


def test_plot_bad_input_is_one_line(store_dir, tmp_path):
    out, trained, evaluated = store_dir
    one_line_error(invoke("plot", "999", "--out", str(out)), "no run with id 999")
    one_line_error(invoke("plot", str(evaluated), "--out", str(out)), f"run {evaluated} (eval on",
                   "has no stored training steps")
    only_an_error_line(invoke("plot", str(trained), "--out", str(out), "--file", str(tmp_path / "c.svg")),
                       "--file", "use a .png file name")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    only_an_error_line(invoke("plot", str(trained), "--out", str(out), "--file", str(blocker / "c.png")),
                       "--file", "is a file, not a folder")
    only_an_error_line(invoke("plot", "--out", str(tmp_path / "empty")), "no results at")


def test_leaderboard_plot_of_runs_without_steps_is_one_line(tmp_path):
    out = tmp_path / "runs"
    with ResultStore(out / "results.sqlite") as store:
        run_id = store.start_run(method="eval", env="sgcd_envs/Tau3Airline-v0")
        from leaderboards.store import EpisodeResult

        store.record_evaluation(run_id, 0, [EpisodeResult("0", 0, "action", 0.0)], wall_s=1, tokens=1)
    one_line_error(invoke("leaderboard", "--out", str(out), "--plot", str(tmp_path / "c.png")),
                   "none of the runs shown has stored training steps")


def test_compare_plots_its_curves_and_plot_redraws_them(tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    out, png = tmp_path / "runs", tmp_path / "compare.png"
    result = invoke("compare", "grpo", "--model", str(model_dir), "--out", str(out), "--no-baseline",
                    "--steps", "2", "--group-size", "2", "--max-turns", "1", "--max-new-tokens", "3",
                    "--eval-tasks", "2", "--plot", str(png), "--no-warm-start")
    assert result.exit_code == 0, result.output
    board, curves = result.output.index("leaderboard"), result.output.index("learning curves")
    assert board < curves  # the curves come after the table
    assert "grpo s0 #1" in result.output and "writes / episode" in result.output
    assert is_png(png)
    with ResultStore(out / "results.sqlite") as store:
        assert [s.step for s in store.steps(1)] == [1, 2]
    redrawn = invoke("plot", "1", "--out", str(out), "--file", str(tmp_path / "again.png"))
    assert redrawn.exit_code == 0, redrawn.output
    assert "grpo s0 #1" in redrawn.output and is_png(tmp_path / "again.png")
    listed = invoke("leaderboard", "--out", str(out), "--plot", str(tmp_path / "board.png"))
    assert listed.exit_code == 0, listed.output
    assert is_png(tmp_path / "board.png")


def _steps(store: ResultStore, run_id: int, rewards: list[float]) -> None:
    for i, r in enumerate(rewards, start=1):
        store.record_step(run_id, TrainStep(step=i, reward_mean=r, action_success=None, no_write_success=r,
                                            write_calls=0.0, episodes=4, updated=True, loss=0.1,
                                            groups_kept=1, groups_drawn=2, step_s=0.5))


def test_plot_of_several_seeds_says_whether_each_method_rose_by_more_than_its_spread(tmp_path):
    out = tmp_path / "runs"
    curves = {("grpo", 0): [0.2, 0.4, 0.6, 0.6], ("grpo", 1): [0.3, 0.5, 0.7, 0.8], ("grpo", 2): [0.25, 0.5, 0.6, 0.7],
              ("sdpo", 0): [0.3, 0.3, 0.5, 0.5], ("sdpo", 1): [0.5, 0.4, 0.3, 0.3], ("sdpo", 2): [0.4, 0.4, 0.4, 0.4]}
    ids = []
    with ResultStore(out / "results.sqlite") as store:
        for (method, seed), rewards in curves.items():
            ids.append(store.start_run(method=method, env="sgcd_envs/TinyShop-v0", seed=seed))
            _steps(store, ids[-1], rewards)
    result = invoke("plot", *map(str, ids), "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[1:-1]]
            for ln in result.output.splitlines() if ln.startswith("│")}
    # grpo: gains +0.40 +0.45 +0.40, mean 0.417 > spread 0.05; sdpo: +0.20 -0.20 0.00, mean 0 < 0.4
    assert rows["grpo"][1:] == ["0 1 2", "0.20 0.30 0.25", "0.60 0.75 0.65", "+0.40 +0.45 +0.40", "+0.417", "0.050",
                                "yes"]
    assert rows["sdpo"][4:] == ["+0.20 -0.20 +0.00", "+0.000", "0.400", "no"]


def test_compare_with_several_seeds_trains_each_method_once_per_seed(tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_model_dir(model_dir, tokenizer)
    out = tmp_path / "runs"
    result = invoke("compare", "grpo", "--seeds", "3,5", "--model", str(model_dir), "--out", str(out),
                    "--steps", "3", "--env", "tiny-shop", "--no-warm-start", "--group-size", "2",
                    "--groups-per-batch", "1", "--max-turns", "1", "--max-new-tokens", "3", "--eval-tasks", "2",
                    "--threads", "1", "--probe-tasks", "3", "--probe-samples", "2")
    assert result.exit_code == 0, result.output
    assert "seeds 3, 5: every method trains once per seed" in result.output
    assert "device cpu · decode eager · torch threads 1" in " ".join(result.output.split())  # wrapped
    assert ("probe: the first 3 train tasks, 2 samples each at temperature 1 with fixed random numbers, in every "
            "step's first rollout batch") in " ".join(result.output.split())
    with ResultStore(out / "results.sqlite") as store:
        runs = [r for r in store.runs() if r.method == "grpo"]
        assert [(r.method, r.seed) for r in runs] == [("grpo", 3), ("grpo", 5)]
        for run in runs:  # the tiny model never closes a call: every probe episode fails, none writes
            assert [(s.step, s.probe_reward, s.probe_write_calls) for s in store.steps(run.id)] == [
                (1, 0.0, 0.0), (2, 0.0, 0.0), (3, 0.0, 0.0)]
    assert "grpo (mean of seeds 3, 5)" in result.output  # the terminal plot draws the seeds' mean
    assert "probe reward" in result.output  # the probe's row of panels
    assert "train reward (probe (fixed train tasks))" in result.output
    assert "gain > spread" in result.output  # the learning table of the two seeds


def test_the_learning_table_judges_the_probe_when_every_run_has_one(tmp_path):
    from leaderboards import curves as lc

    out = tmp_path / "runs"
    with ResultStore(out / "results.sqlite") as store:
        ids = []
        for seed, (rollouts, probe) in enumerate([([0.5, 0.1, 0.2], [0.3, 0.5, 0.6]),
                                                   ([0.1, 0.6, 0.3], [0.3, 0.4, 0.6])]):
            ids.append(store.start_run(method="grpo", env="sgcd_envs/TinyShop-v0", seed=seed))
            for i, (r, p) in enumerate(zip(rollouts, probe), start=1):
                store.record_step(ids[-1], TrainStep(step=i, reward_mean=r, action_success=None, no_write_success=r,
                                                     write_calls=0.0, episodes=4, updated=True, loss=0.1,
                                                     groups_kept=1, groups_drawn=2, step_s=0.5, probe_reward=p,
                                                     probe_action_success=p, probe_no_write_success=None,
                                                     probe_write_calls=0.5))
        found = lc.run_curves(store, ids)
    (row,) = lc.learning(found)
    # probe: gains 0.55 - 0.3 and 0.5 - 0.3; the rollouts would have said -0.35 and +0.35
    assert row.metric == "probe_reward" and row.gains == pytest.approx((0.25, 0.2)) and row.learns is True
    unprobed = [lc.Curve(c.run_id, c.method, c.env, c.seed,
                         tuple(dataclasses.replace(s, probe_reward=None) for s in c.steps)) for c in found]
    (plain,) = lc.learning(unprobed)
    assert plain.metric == "reward_mean" and plain.gains == pytest.approx((-0.35, 0.35)) and plain.learns is False
    assert lc.panels(found) == (lc.METRICS, lc.PROBE_METRICS) and lc.panels(unprobed) == (lc.METRICS,)
    text = lc.terminal_plot(found, color=False)
    assert "probe reward" in text and "probe no-write success" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    png = lc.write_png(found, tmp_path / "probe.png")
    assert is_png(png)
    assert png.read_bytes()[16:24] == (1400).to_bytes(4, "big") + (740).to_bytes(4, "big")  # two rows of panels


@pytest.mark.parametrize("seeds", ["a,b", "1,1", ","])
def test_bad_seeds_are_one_line(seeds, tmp_path):
    only_an_error_line(invoke("compare", "grpo", "--seeds", seeds, "--out", str(tmp_path)), "--seeds")
    only_an_error_line(invoke("compare", "grpo", "--seeds", "0,1", "--seed", "2", "--out", str(tmp_path)),
                       "--seed and --seeds")


def test_several_seeds_plot_as_their_mean_with_the_range_shaded(tmp_path):
    from leaderboards import curves as lc

    out = tmp_path / "runs"
    with ResultStore(out / "results.sqlite") as store:
        ids = []
        for seed, rewards in enumerate([[0.2, 0.4], [0.4, 0.8], [0.3, 0.6]]):
            ids.append(store.start_run(method="grpo", env="sgcd_envs/TinyShop-v0", seed=seed))
            _steps(store, ids[-1], rewards)
        ids.append(store.start_run(method="sdpo", env="sgcd_envs/TinyShop-v0", seed=0))
        _steps(store, ids[-1], [0.5, 0.5])
        found = lc.run_curves(store, ids)
    means = lc.seed_means(found)
    assert [c.label for c in means] == ["grpo (mean of seeds 0, 1, 2)", f"sdpo s0 #{ids[-1]}"]
    assert [round(s.reward_mean, 6) for s in means[0].steps] == [0.3, 0.6]
    text = lc.terminal_plot(found, color=False)
    assert "seeds 0, 1, 2" in text.splitlines()[0] and "grpo (mean of seeds 0, 1, 2)" in text.splitlines()[-1]
    assert is_png(lc.write_png(found, tmp_path / "bands.png"))
