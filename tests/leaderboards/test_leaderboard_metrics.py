"""Metric formulas against hand-computed values and brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leaderboards import metrics
from leaderboards.store import EpisodeResult


def ep(task: str, trial: int, reward: float, category: str | None = None, writes: int = 0) -> EpisodeResult:
    return EpisodeResult(task, trial, category, reward, write_calls=writes)


def test_pass_at_k_task_hand_values():
    # n=5, c=2, k=2: 1 − C(3,2)/C(5,2) = 1 − 3/10
    assert metrics.pass_at_k_task(5, 2, 2) == pytest.approx(0.7)
    # n=4, c=1, k=3: 1 − C(3,3)/C(4,3) = 1 − 1/4
    assert metrics.pass_at_k_task(4, 1, 3) == pytest.approx(0.75)
    assert metrics.pass_at_k_task(3, 0, 2) == 0.0
    assert metrics.pass_at_k_task(3, 2, 2) == 1.0  # n − c < k


def test_pass_hat_k_task_hand_values():
    # n=4, c=3, k=2: C(3,2)/C(4,2) = 3/6
    assert metrics.pass_hat_k_task(4, 3, 2) == pytest.approx(0.5)
    # n=5, c=3, k=3: C(3,3)/C(5,3) = 1/10
    assert metrics.pass_hat_k_task(5, 3, 3) == pytest.approx(0.1)
    assert metrics.pass_hat_k_task(3, 1, 2) == 0.0


@given(st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_estimators_equal_enumeration_over_k_subsets(nck):
    """Both estimators equal the exact probability over all k-subsets of the n trials."""
    n, c, k = nck
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    assert metrics.pass_at_k_task(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
    assert metrics.pass_hat_k_task(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets))


def test_averaged_over_tasks_not_episodes():
    # task a: 3 trials, 3 passes; task b: 1 trial... averaged per task, not per episode
    eps = [ep("a", 0, 1), ep("a", 1, 1), ep("a", 2, 0), ep("b", 0, 0), ep("b", 1, 0), ep("b", 2, 1)]
    # pass@1: (2/3 + 1/3)/2 = 0.5 ; pass^2: (C(2,2)/C(3,2) + 0)/2 = (1/3)/2
    assert metrics.pass_at_k(eps, 1) == pytest.approx(0.5)
    assert metrics.pass_hat_k(eps, 2) == pytest.approx(1 / 6)
    # pass@2: (1 − C(1,2)/C(3,2) + 1 − C(2,2)/C(3,2))/2 = (1 + 2/3)/2
    assert metrics.pass_at_k(eps, 2) == pytest.approx(5 / 6)
    assert metrics.pass_at_1(eps) == (pytest.approx(0.5), 3)
    uneven = eps + [ep("c", 0, 1)]
    assert metrics.trial_range(uneven) == (1, 3)
    with pytest.raises(ValueError, match="task 'c' has 1"):
        metrics.pass_hat_k(uneven, 2)


def test_partial_reward_is_not_a_pass():
    eps = [ep("a", 0, 0.999), ep("b", 0, 1.0)]
    assert metrics.pass_at_k(eps, 1) == 0.5


def test_category_rates_write_calls_and_tokens():
    eps = [
        ep("1", 0, 1, "action", 2), ep("1", 1, 0, "action", 1),
        ep("2", 0, 0, "action", 0), ep("2", 1, 0, "action", 0),
        ep("3", 0, 1, "no_write"), ep("3", 1, 1, "no_write"),
    ]
    assert metrics.action_pass_rate(eps) == pytest.approx(0.25)  # (1/2 + 0)/2
    assert metrics.no_write_pass_rate(eps) == 1.0
    assert metrics.action_pass_rate([ep("3", 0, 1, "no_write")]) is None
    assert metrics.write_calls_per_episode(eps) == pytest.approx(3 / 6)
    assert metrics.tokens_per_second(1200, 4.0) == 300.0
    assert metrics.tokens_per_second(10, 0.0) is None


def test_tgc_and_sgc_appworld():
    # scenarios: "s1" has tasks s1_1, s1_2, s1_3; "ab_cd" (underscore inside) has ab_cd_1, ab_cd_2
    eps = [ep("s1_1", 0, 1), ep("s1_2", 0, 1), ep("s1_3", 0, 1), ep("ab_cd_1", 0, 1), ep("ab_cd_2", 0, 0)]
    assert metrics.scenario_id("ab_cd_2") == "ab_cd"
    assert metrics.tgc(eps) == pytest.approx(80.0)  # 4 of 5 tasks
    assert metrics.sgc(eps) == pytest.approx(50.0)  # s1 complete, ab_cd not
    # a second trial in which everything passes: SGC averages 50 and 100
    eps2 = eps + [ep(e.task_id, 1, 1) for e in eps]
    assert metrics.sgc(eps2) == pytest.approx(75.0)
    assert metrics.tgc(eps2) == pytest.approx(100 * (4 * 1 + 0.5) / 5)


def test_bad_inputs_raise_with_the_value():
    with pytest.raises(ValueError, match="k must be in"):
        metrics.pass_at_k_task(3, 1, 4)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        metrics.pass_hat_k_task(3, 4, 1)
    with pytest.raises(ValueError, match="no episodes"):
        metrics.pass_at_k([], 1)
    assert math.isclose(metrics.pass_at_k_task(1, 1, 1), 1.0)
