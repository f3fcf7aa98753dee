"""The tool-use collapse guard on synthetic training curves."""

from __future__ import annotations

import pytest

from leaderboards.collapse import (
    CollapseGuard,
    CollapsePoint,
    CollapseThresholds,
    observe,
    point_from_episodes,
    replay,
)
from leaderboards.store import EpisodeResult


def curve(writes, actions, rewards):
    return [CollapsePoint(i, w, a, r) for i, (w, a, r) in enumerate(zip(writes, actions, rewards))]


def test_sdpo_like_collapse_is_flagged():
    # write calls and action success vanish; the headline drifts 0.45 → 0.38 (within 0.1)
    pts = curve(
        writes=[1.8, 2.0, 1.5, 0.9, 0.3, 0.1, 0.0],
        actions=[0.30, 0.34, 0.25, 0.15, 0.05, 0.0, 0.0],
        rewards=[0.45, 0.44, 0.44, 0.41, 0.40, 0.39, 0.38],
    )
    guard = replay(pts)
    v = guard.verdict
    assert v.flag and v.status == "silent_collapse"
    assert set(v.collapsed_signals) == {"write_calls", "action_success"}
    assert "write calls/episode 1.90 → 0.00" in v.reason
    assert "action-task success 0.32 → 0.00" in v.reason
    assert "holds" in v.reason
    # first point below 25% of baseline for writes is step 4 (0.3 <= 0.475); patience 2 → step 5
    assert guard.first_flagged_step == 5


def test_healthy_run_not_flagged():
    pts = curve(
        writes=[1.2, 1.4, 1.3, 1.5, 1.6, 1.4, 1.5],
        actions=[0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5],
        rewards=[0.40, 0.42, 0.45, 0.48, 0.52, 0.55, 0.58],
    )
    guard = replay(pts)
    assert guard.verdict.status == "healthy" and not guard.verdict.flag
    assert guard.first_flagged_step is None


def test_everything_dropping_is_overall_decline_not_silent_collapse():
    pts = curve(
        writes=[2.0, 2.0, 1.0, 0.2, 0.0, 0.0],
        actions=[0.4, 0.4, 0.2, 0.0, 0.0, 0.0],
        rewards=[0.5, 0.5, 0.35, 0.2, 0.1, 0.1],
    )
    guard = replay(pts)
    assert guard.verdict.status == "overall_decline"
    assert not guard.verdict.flag and guard.first_flagged_step is None
    assert "not a silent collapse" in guard.verdict.reason


def test_tiny_rates_are_not_noise_flagged():
    # 0.2 → 0.0 write calls is below 25% but loses less than min_abs_drop_write = 0.5
    pts = curve([0.2, 0.2, 0.0, 0.0, 0.0], [None] * 5, [0.3] * 5)
    assert replay(pts).verdict.status == "healthy"


def test_patience_and_value_semantics():
    g0 = CollapseGuard(CollapseThresholds(baseline_window=1, patience=2))
    g1 = observe(g0, CollapsePoint(0, 2.0, 0.5, 0.4))
    assert g1.verdict.status == "warming_up" and g0.history == ()  # input unchanged
    g2 = observe(g1, CollapsePoint(1, 0.0, 0.0, 0.4))
    assert g2.verdict.status == "watching" and not g2.verdict.flag
    g3 = observe(g2, CollapsePoint(2, 0.0, 0.0, 0.4))
    assert g3.verdict.flag
    # a recovery resets the streak but remembers the flag
    g4 = observe(g3, CollapsePoint(3, 2.0, 0.5, 0.45))
    assert g4.verdict.status == "healthy" and g4.first_flagged_step == 2


def test_action_only_collapse_without_action_split_env():
    # AppWorld-like: no action split, writes collapse alone
    pts = curve([3.0, 3.0, 0.5, 0.4, 0.3], [None] * 5, [0.2, 0.2, 0.2, 0.2, 0.2])
    v = replay(pts).verdict
    assert v.flag and v.collapsed_signals == ("write_calls",)


def test_point_from_episodes_and_validation():
    eps = [EpisodeResult("1", 0, "action", 1.0, write_calls=2),
           EpisodeResult("2", 0, "no_write", 0.0, write_calls=0)]
    p = point_from_episodes(7, eps)
    assert (p.step, p.write_calls, p.action_success, p.reward) == (7, 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="drop_fraction"):
        CollapseThresholds(drop_fraction=1.5)
    with pytest.raises(ValueError, match="CollapsePoint.reward"):
        CollapsePoint(0, 1.0, None, float("nan"))


def test_replay_stored_flags_a_collapsed_run_in_the_store(tmp_path):
    from leaderboards.collapse import COLLAPSE_FLAG, replay_stored
    from leaderboards.store import ResultStore

    def evaluation(action_passes: int, writes: int):
        # 4 action tasks (the first `action_passes` pass), 3 no-write tasks that always pass
        return ([EpisodeResult(f"a{i}", 0, "action", float(i < action_passes), write_calls=writes)
                 for i in range(4)]
                + [EpisodeResult(f"n{i}", 0, "no_write", 1.0) for i in range(3)])

    with ResultStore(tmp_path / "r.sqlite") as store:
        sdpo = store.start_run(method="sdpo", env="sgcd_envs/Tau3Airline-v0")
        healthy = store.start_run(method="sgcd", env="sgcd_envs/Tau3Airline-v0")
        for step, (ap, w) in enumerate([(1, 2), (1, 2), (1, 1), (0, 0), (0, 0), (0, 0)]):
            store.record_evaluation(sdpo, step, evaluation(ap, w), wall_s=1, tokens=1)
            store.record_evaluation(healthy, step, evaluation(1 + step // 2, 2), wall_s=1, tokens=1)
        # sdpo: reward 4/7 → 3/7 (drop 0.14 > 0.1 tolerance) would read as a visible decline,
        # so widen the tolerance the way a user would for a 7-task smoke run
        th = CollapseThresholds(reward_tolerance=0.15)
        assert replay_stored(store, sdpo, th).first_flagged_step == 4
        assert replay_stored(store, healthy, th).first_flagged_step is None
        assert "write calls/episode 1.14 → 0.00" in store.run(sdpo).flags[COLLAPSE_FLAG]
        assert store.run(healthy).flags == {}


def test_the_guard_reads_the_writes_the_tools_carried_out():
    """Refused write attempts are not tool use that changes state: a policy whose writes are all
    refused has 0 writes per episode for the guard (rows stored before v4 count attempts)."""
    from leaderboards.collapse import point_from_episodes
    from leaderboards.store import EpisodeResult

    refused = [EpisodeResult("1", t, "action", 0.0, write_calls=2, write_calls_succeeded=0) for t in range(3)]
    old_rows = [EpisodeResult("1", t, "action", 0.0, write_calls=2) for t in range(3)]
    assert point_from_episodes(1, refused).write_calls == 0.0
    assert point_from_episodes(1, old_rows).write_calls == 2.0
