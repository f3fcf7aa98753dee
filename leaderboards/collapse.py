"""Tool-use collapse guard: the silent failure SDPO showed on τ³-airline.

The SGCD paper (arXiv 2606.12634, as summarised by secondary sources) reports that SDPO's
held-out pass@1 on τ³-airline looked plausible (0.317) while its success on action tasks —
tasks that need a write tool — fell to 0%: the agent learned to stop acting and to answer
information-only tasks, which a do-nothing agent already passes. The headline number hides it.

This module watches, per training evaluation/step, three numbers:

* ``write_calls`` — write-tool calls per episode,
* ``action_success`` — pass rate on action tasks (``None`` when the env has no such split),
* ``reward`` — the headline reward (mean reward or pass@1),

and calls it a **silent collapse** when a tool-use signal falls far below its start *while the
headline reward holds*. Definitions (all thresholds are **our choice**, not from a paper;
see :class:`CollapseThresholds`):

    baseline b_x    = mean of x over the first ``baseline_window`` points
    x has collapsed ⇔ x ≤ drop_fraction · b_x  and  b_x − x ≥ min_abs_drop_x
    reward holds    ⇔ reward ≥ b_reward − reward_tolerance
    silent collapse ⇔ (write_calls or action_success has collapsed) and reward holds,
                      on ``patience`` consecutive points

If a tool-use signal collapsed but the headline reward dropped too, the verdict is
``"overall_decline"``: the failure is visible in the headline itself, so it is *not* flagged
as a silent collapse (``flag`` is False); the reason still says what fell.

The guard is a frozen value: :func:`observe` returns a new :class:`CollapseGuard`, never
mutating its input, so it is trivially checkpointable and testable.

Example::

    guard = CollapseGuard()
    for step, m in enumerate(evals):
        guard = observe(guard, CollapsePoint(step, m.write_calls, m.action_pass, m.reward))
        if guard.verdict.flag:
            console.print(f"[yellow]⚠ {guard.verdict.reason}")
            store.flag_run(run_id, COLLAPSE_FLAG, guard.verdict.reason)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from . import metrics

__all__ = [
    "COLLAPSE_FLAG",
    "CollapseGuard",
    "CollapsePoint",
    "CollapseThresholds",
    "CollapseVerdict",
    "observe",
    "point_from_episodes",
    "replay",
    "replay_stored",
]

COLLAPSE_FLAG = "tool_use_collapse"
"""Flag name written to the result store (:meth:`ResultStore.flag_run`) for a silent collapse."""

Status = Literal["warming_up", "healthy", "watching", "silent_collapse", "overall_decline"]


@dataclass(frozen=True)
class CollapseThresholds:
    """Detector settings. Every default is our choice (no paper gives one)."""

    baseline_window: int = 2
    """Points averaged into the starting level (first evaluations of the run)."""
    drop_fraction: float = 0.25
    """A signal has collapsed when it is at or below this fraction of its baseline."""
    min_abs_drop_write: float = 0.5
    """...and has lost at least this many write calls per episode (noise floor for tiny rates)."""
    min_abs_drop_action: float = 0.15
    """...or, for action-task success, at least this much absolute pass rate."""
    reward_tolerance: float = 0.1
    """The headline "holds" while it is at most this far (absolute) below its baseline."""
    patience: int = 2
    """Consecutive collapsed-but-holding points needed before flagging."""

    def __post_init__(self) -> None:
        if not isinstance(self.baseline_window, int) or self.baseline_window < 1:
            raise ValueError(f"baseline_window must be an int >= 1, got {self.baseline_window!r}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {self.patience!r}")
        if not 0.0 <= self.drop_fraction < 1.0:
            raise ValueError(f"drop_fraction must be in [0, 1), got {self.drop_fraction!r}")
        for name in ("min_abs_drop_write", "min_abs_drop_action", "reward_tolerance"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


@dataclass(frozen=True)
class CollapsePoint:
    """One observation: write calls per episode, action-task success (or None), headline reward."""

    step: int
    write_calls: float
    action_success: float | None
    reward: float

    def __post_init__(self) -> None:
        for name in ("write_calls", "action_success", "reward"):
            v = getattr(self, name)
            if v is None and name == "action_success":
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"CollapsePoint.{name} must be a finite number >= 0, got {v!r}")


@dataclass(frozen=True)
class CollapseVerdict:
    """The guard's judgement after the latest point.

    ``flag`` is True only for ``status == "silent_collapse"``; ``reason`` is one readable line.
    """

    status: Status
    reason: str
    step: int | None = None
    collapsed_signals: tuple[str, ...] = ()

    @property
    def flag(self) -> bool:
        return self.status == "silent_collapse"


@dataclass(frozen=True)
class CollapseGuard:
    """Detector state as a value. Feed it with :func:`observe`."""

    thresholds: CollapseThresholds = field(default_factory=CollapseThresholds)
    history: tuple[CollapsePoint, ...] = ()
    streak: int = 0
    verdict: CollapseVerdict = CollapseVerdict("warming_up", "no evaluations yet")
    first_flagged_step: int | None = None

    def baseline(self) -> CollapsePoint | None:
        """Mean of the first ``baseline_window`` points (action success: of the non-None ones)."""
        w = self.thresholds.baseline_window
        if len(self.history) < w:
            return None
        pts = self.history[:w]
        actions = [p.action_success for p in pts if p.action_success is not None]
        return CollapsePoint(
            step=pts[-1].step,
            write_calls=sum(p.write_calls for p in pts) / w,
            action_success=sum(actions) / len(actions) if actions else None,
            reward=sum(p.reward for p in pts) / w,
        )


def _collapsed(now: float, base: float, frac: float, min_abs: float) -> bool:
    """x collapsed ⇔ x ≤ frac·b and b − x ≥ min_abs."""
    return now <= frac * base and base - now >= min_abs


def observe(guard: CollapseGuard, point: CollapsePoint) -> CollapseGuard:
    """Return the guard after seeing ``point`` (the input guard is unchanged)."""
    th = guard.thresholds
    g = replace(guard, history=guard.history + (point,))
    base = g.baseline()
    if base is None or len(g.history) <= th.baseline_window:
        n = len(g.history)
        return replace(g, streak=0, verdict=CollapseVerdict(
            "warming_up", f"collecting the baseline ({n}/{th.baseline_window} points)", point.step))

    fell: list[str] = []
    parts: list[str] = []
    if _collapsed(point.write_calls, base.write_calls, th.drop_fraction, th.min_abs_drop_write):
        fell.append("write_calls")
        parts.append(f"write calls/episode {base.write_calls:.2f} → {point.write_calls:.2f}")
    if (
        base.action_success is not None
        and point.action_success is not None
        and _collapsed(point.action_success, base.action_success, th.drop_fraction, th.min_abs_drop_action)
    ):
        fell.append("action_success")
        parts.append(f"action-task success {base.action_success:.2f} → {point.action_success:.2f}")
    holds = point.reward >= base.reward - th.reward_tolerance
    headline = f"headline reward {base.reward:.2f} → {point.reward:.2f}"

    if not fell:
        return replace(g, streak=0, verdict=CollapseVerdict(
            "healthy", f"tool use near its start ({headline})", point.step))
    if not holds:
        return replace(g, streak=0, verdict=CollapseVerdict(
            "overall_decline",
            f"{'; '.join(parts)}; {headline} fell too (more than {th.reward_tolerance:g}): "
            "a visible decline, not a silent collapse",
            point.step, tuple(fell)))
    streak = guard.streak + 1
    if streak < th.patience:
        return replace(g, streak=streak, verdict=CollapseVerdict(
            "watching", f"{'; '.join(parts)} while {headline} holds ({streak}/{th.patience} points)",
            point.step, tuple(fell)))
    first = guard.first_flagged_step if guard.first_flagged_step is not None else point.step
    return replace(g, streak=streak, first_flagged_step=first, verdict=CollapseVerdict(
        "silent_collapse",
        f"tool-use collapse at step {point.step}: {'; '.join(parts)} while {headline} holds "
        f"(within {th.reward_tolerance:g})",
        point.step, tuple(fell)))


def replay(points: Iterable[CollapsePoint], thresholds: CollapseThresholds | None = None) -> CollapseGuard:
    """Feed every point in order to a fresh guard; returns the final guard.

    ``guard.first_flagged_step`` tells whether the run was ever flagged, even if it recovered.
    """
    guard = CollapseGuard(thresholds or CollapseThresholds())
    for p in points:
        guard = observe(guard, p)
    return guard


def point_from_episodes(step: int, episodes: Sequence[metrics.Episode]) -> CollapsePoint:
    """A point from one evaluation's episodes: write calls the tools carried out per episode
    (refused attempts are not tool use that changes anything), action pass rate, mean reward."""
    if not episodes:
        raise ValueError("point_from_episodes needs at least one episode")
    return CollapsePoint(
        step=step,
        write_calls=metrics.writes_done_per_episode(episodes),
        action_success=metrics.action_pass_rate(episodes),
        reward=sum(e.reward for e in episodes) / len(episodes),
    )


def replay_stored(store, run_id: int, thresholds: CollapseThresholds | None = None, *, flag: bool = True) -> CollapseGuard:
    """Replay the guard over a stored run's evaluations (in recorded order), e.g. for a run
    trained elsewhere (verl) or recorded before the guard existed. With ``flag=True`` a run
    that was ever silently collapsed gets :data:`COLLAPSE_FLAG` in the store, with the reason.

    ``store`` is a :class:`leaderboards.store.ResultStore` (duck-typed: this module stays pure
    apart from this one helper).
    """
    points = [point_from_episodes(ev.step, store.episodes(ev.id)) for ev in store.evaluations(run_id)]
    guard = CollapseGuard(thresholds or CollapseThresholds())
    reason = None
    for p in points:
        guard = observe(guard, p)
        if guard.verdict.flag and reason is None:
            reason = guard.verdict.reason
    if flag and reason is not None:
        store.flag_run(run_id, COLLAPSE_FLAG, reason)
    return guard
