"""Leaderboard metrics: pure functions over episode outcomes.

Notation: a task j was run n_j times (trials) and passed c_j of them. An episode *passes*
when its reward reaches :data:`PASS_THRESHOLD` (reward 1: τ³'s DB × communicate product, or
AppWorld's "all tests pass"). Averages are over tasks, so every task weighs the same however
many trials it has.

Sources: pass@k — Chen et al. 2021, "Evaluating Large Language Models Trained on Code"
(arXiv 2107.03374), unbiased estimator. pass^k — Yao et al. 2024, "τ-bench" (arXiv 2406.12045).
TGC / SGC — Trivedi et al. 2024, "AppWorld" (arXiv 2407.18901).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "PASS_THRESHOLD",
    "action_pass_rate",
    "category_pass_rate",
    "no_write_pass_rate",
    "pass_at_1",
    "pass_at_k",
    "pass_at_k_task",
    "pass_hat_k",
    "pass_hat_k_task",
    "passed",
    "scenario_id",
    "sgc",
    "task_counts",
    "tgc",
    "tokens_per_second",
    "trial_range",
    "write_calls_per_episode",
    "writes_done_per_episode",
]

PASS_THRESHOLD = 1.0
"""An episode passes when reward >= PASS_THRESHOLD − 1e-9 (τ-bench and AppWorld: full reward)."""


class Episode(Protocol):
    """What the metrics read from an episode (``store.EpisodeResult`` satisfies it)."""

    task_id: str
    trial: int
    category: str | None
    reward: float
    write_calls: int


def passed(reward: float, threshold: float = PASS_THRESHOLD) -> bool:
    """pass = [reward >= threshold − 1e-9] (the slack absorbs float round-off)."""
    return reward >= threshold - 1e-9


def _check_nck(n: int, c: int, k: int) -> None:
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"n, c, k must be ints, got n={n!r}, c={c!r}, k={k!r}")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}] (a task with {n} trials), got k={k}")


def pass_at_k_task(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task (Chen et al. 2021, eq. 1):

        pass@k = 1 − C(n − c, k) / C(n, k)

    the probability that at least one of k trials drawn without replacement from the n run
    passes. ``math.comb`` returns 0 when n − c < k, giving 1.
    """
    _check_nck(n, c, k)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k_task(n: int, c: int, k: int) -> float:
    """pass^k of one task (τ-bench, Yao et al. 2024):

        pass^k = C(c, k) / C(n, k)

    the probability that all k trials drawn without replacement from the n run pass.
    pass^1 = pass@1 = c / n.
    """
    _check_nck(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def task_counts(episodes: Iterable[Episode], threshold: float = PASS_THRESHOLD) -> dict[str, tuple[int, int]]:
    """task_id → (n, c): trials run and trials passed."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in episodes:
        counts[e.task_id][0] += 1
        counts[e.task_id][1] += int(passed(e.reward, threshold))
    return {t: (n, c) for t, (n, c) in counts.items()}


def _mean_over_tasks(counts: Mapping[str, tuple[int, int]], k: int, fn) -> float:
    if not counts:
        raise ValueError("no episodes: a pass rate needs at least one task")
    short = {t: n for t, (n, _) in counts.items() if n < k}
    if short:
        t, n = next(iter(short.items()))
        raise ValueError(f"k={k} needs >= {k} trials per task, but task {t!r} has {n} ({len(short)} such tasks)")
    return sum(fn(n, c, k) for n, c in counts.values()) / len(counts)


def pass_at_k(episodes: Iterable[Episode], k: int) -> float:
    """pass@k = (1/|T|) Σ_j [1 − C(n_j − c_j, k) / C(n_j, k)], over tasks T (unbiased estimator)."""
    return _mean_over_tasks(task_counts(episodes), k, pass_at_k_task)


def pass_hat_k(episodes: Iterable[Episode], k: int) -> float:
    """pass^k = (1/|T|) Σ_j C(c_j, k) / C(n_j, k), over tasks T (τ-bench)."""
    return _mean_over_tasks(task_counts(episodes), k, pass_hat_k_task)


def trial_range(episodes: Iterable[Episode]) -> tuple[int, int]:
    """(min n_j, max n_j): trials per task; equal when every task ran equally often."""
    ns = [n for n, _ in task_counts(episodes).values()]
    if not ns:
        raise ValueError("no episodes")
    return min(ns), max(ns)


def pass_at_1(episodes: Sequence[Episode]) -> tuple[float, int]:
    """(pass@1, trials): pass@1 = (1/|T|) Σ_j c_j / n_j, and the minimum trials per task
    (the "n" printed beside it)."""
    return pass_at_k(episodes, 1), trial_range(episodes)[0]


def category_pass_rate(episodes: Iterable[Episode], category: str) -> float | None:
    """pass@1 restricted to the tasks of one category (``"action"`` or ``"no_write"``),
    averaged over those tasks; ``None`` when the evaluation has no such task."""
    chosen = [e for e in episodes if e.category == category]
    return pass_at_k(chosen, 1) if chosen else None


def action_pass_rate(episodes: Iterable[Episode]) -> float | None:
    """pass@1 over action tasks (reference actions contain a write). SDPO's collapse shows
    here first: 0 on action tasks while no-write tasks still pass."""
    return category_pass_rate(episodes, "action")


def no_write_pass_rate(episodes: Iterable[Episode]) -> float | None:
    """pass@1 over no-write (information-only) tasks, which a do-nothing agent can pass."""
    return category_pass_rate(episodes, "no_write")


def writes_done_per_episode(episodes: Sequence[Episode]) -> float:
    """Σ_episodes write calls the tools carried out / #episodes (an episode stored without that
    count contributes its attempted write calls)."""
    if not episodes:
        raise ValueError("writes_done_per_episode needs at least one episode")
    done = [getattr(e, "write_calls_succeeded", None) for e in episodes]
    return sum(e.write_calls if d is None else d for e, d in zip(episodes, done)) / len(episodes)


def write_calls_per_episode(episodes: Sequence[Episode]) -> float:
    """Σ_episodes write_calls / #episodes."""
    if not episodes:
        raise ValueError("no episodes")
    return sum(e.write_calls for e in episodes) / len(episodes)


def tokens_per_second(tokens: int, wall_s: float) -> float | None:
    """tokens / wall_s; ``None`` when wall_s == 0 (nothing timed)."""
    if tokens < 0 or wall_s < 0:
        raise ValueError(f"tokens and wall_s must be >= 0, got tokens={tokens}, wall_s={wall_s}")
    return tokens / wall_s if wall_s > 0 else None


def scenario_id(task_id: str) -> str:
    """AppWorld scenario of a task: the id before its last "_" (``"50e1ac9_2"`` → ``"50e1ac9"``).
    An id without "_" is its own scenario."""
    return task_id.rsplit("_", 1)[0]


def tgc(episodes: Iterable[Episode]) -> float:
    """Task Goal Completion, in percent: 100 × (1/|T|) Σ_j c_j / n_j.

    With one trial per task this is AppWorld's "% of tasks whose tests all pass"; with
    several trials it is that percentage averaged over trials.
    """
    return 100.0 * pass_at_k(episodes, 1)


def sgc(episodes: Iterable[Episode]) -> float:
    """Scenario Goal Completion, in percent: for each trial index r,

        SGC_r = 100 × |{s : every task of scenario s passes in trial r}| / |scenarios in trial r|

    and SGC = mean_r SGC_r. Scenario = :func:`scenario_id`. One trial gives AppWorld's SGC.
    """
    by_trial: dict[int, dict[str, bool]] = defaultdict(dict)
    for e in episodes:
        s = scenario_id(e.task_id)
        by_trial[e.trial][s] = by_trial[e.trial].get(s, True) and passed(e.reward)
    if not by_trial:
        raise ValueError("no episodes")
    return sum(100.0 * sum(ok.values()) / len(ok) for ok in by_trial.values()) / len(by_trial)
