"""Learning curves: the training steps stored with each run, per step and per method.

Four metrics of the step's rollouts (:class:`~leaderboards.store.TrainStep`), one curve per run:

* ``train reward`` — mean verifier reward over every episode rolled out;
* ``action success`` — pass@1 over the rolled-out action tasks (a step that drew none has no point);
* ``no-write success`` — pass@1 over the rolled-out no-write tasks (likewise);
* ``writes / episode`` — write-tool calls per rolled-out episode.

A run with a probe (``--probe-tasks N``) also stores, for every
step, the same four on the first N train tasks, played by the policy that rolled the step out
(greedy, or ``--probe-samples K`` draws with fixed random numbers): the same tasks and draws at
every step and for every seed, so that curve moves only with the policy (the rollouts' reward
also moves with which tasks a step happened to draw). They are drawn as a second row of panels, and
:func:`learning` judges the train reward on them when every run has them.

SDPO's tool-use collapse shows here as action success and writes per episode falling while
no-write success holds. Two renderings of the same curves:

* :func:`terminal_plot` — four small panels side by side (plotext), about 100 columns × 16 rows,
  one marker per run, with a legend line naming each run's method and seed;
* :func:`write_png` — a 2 × 2 grid (matplotlib, Agg canvas: no display needed).

Example::

    with ResultStore("runs/results.sqlite") as store:
        curves = run_curves(store, default_run_ids(store))
    print(terminal_plot(curves, color=False))
    write_png(curves, "curves.png")

plotext and matplotlib are imported inside the functions that draw, so the store and the tables
never load them (nor numpy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from .store import ResultStore, RunRecord, StoreError, TrainStep

__all__ = [
    "METRICS",
    "Curve",
    "Learning",
    "NoStepsError",
    "PROBE_METRICS",
    "default_run_ids",
    "has_probe",
    "panels",
    "by_method",
    "learning",
    "seed_means",
    "run_curves",
    "series",
    "terminal_plot",
    "title",
    "write_png",
]

METRICS: tuple[tuple[str, str], ...] = (
    ("reward_mean", "train reward"),
    ("action_success", "action success"),
    ("no_write_success", "no-write success"),
    ("write_calls", "writes / episode"),
)
"""(:class:`TrainStep` field, panel title), in panel order: the step's rollouts."""

PROBE_METRICS: tuple[tuple[str, str], ...] = (
    ("probe_reward", "probe reward"),
    ("probe_action_success", "probe action success"),
    ("probe_no_write_success", "probe no-write success"),
    ("probe_write_calls", "probe writes / episode"),
)
"""The same four measured on the run's fixed probe tasks (before the step's update): a
second row of panels when a run has them."""

RATES = frozenset({"reward_mean", "action_success", "no_write_success", "probe_reward", "probe_action_success",
                   "probe_no_write_success"})
"""Metrics in [0, 1]: their axes are fixed to [0, 1] so runs and panels compare at a glance."""

MARKERS = ("•", "x", "+", "o", "*", "#", "%", "@")
"""Terminal marker of the i-th run (cycled): runs stay apart without colors."""


class NoStepsError(StoreError):
    """A run asked for has no stored training steps (an evaluation-only or baseline run, or one
    stored before the store kept steps)."""


@dataclass(frozen=True)
class Curve:
    """The stored training steps of one run, with what its label and the title need."""

    run_id: int
    method: str
    env: str
    seed: int | None
    steps: tuple[TrainStep, ...]
    name: str | None = None
    """A label of its own (the seed means of :func:`seed_means`); None = method, seed and run id."""

    @property
    def label(self) -> str:
        """``"grpo s0 #3"``: method, seed and run id."""
        if self.name is not None:
            return self.name
        seed = "" if self.seed is None else f" s{self.seed}"
        return f"{self.method}{seed} #{self.run_id}"


def _curve(run: RunRecord, steps: Sequence[TrainStep]) -> Curve:
    return Curve(run.id, run.method, run.env, run.seed, tuple(steps))


def run_curves(store: ResultStore, run_ids: Sequence[int]) -> list[Curve]:
    """The curves of these runs, in the order given. Raises :class:`StoreError` for an unknown
    run id and :class:`NoStepsError` for a run without stored steps."""
    if not run_ids:
        raise NoStepsError(f"no runs to plot in {store.path}")
    curves = []
    for run_id in run_ids:
        run = store.run(run_id)
        steps = store.steps(run_id)
        if not steps:
            raise NoStepsError(f"run {run_id} ({run.method} on {run.env}) has no stored training steps in "
                               f"{store.path}; only `compare` and `train` runs have learning curves")
        curves.append(_curve(run, steps))
    return curves


def default_run_ids(store: ResultStore) -> list[int]:
    """The runs ``sgcd-bench plot`` draws when none are named: in the environment of the newest
    run with stored steps, the newest such run of each method (ordered by method)."""
    trained = [run for run in store.runs() if store.steps(run.id)]
    if not trained:
        raise NoStepsError(f"no run in {store.path} has stored training steps; run `sgcd-bench compare` first")
    env = trained[-1].env
    latest = {run.method: run.id for run in trained if run.env == env}  # runs() is oldest first
    return [latest[m] for m in sorted(latest)]


def has_probe(curves: Sequence[Curve]) -> bool:
    """Whether any of the curves has probe measurements."""
    return any(s.probe_reward is not None for c in curves for s in c.steps)


def panels(curves: Sequence[Curve]) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The rows of panels to draw: the rollouts' metrics, and the probe's when there are any."""
    return (METRICS, PROBE_METRICS) if has_probe(curves) else (METRICS,)


def series(curve: Curve, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric of a curve, leaving out the steps where it is ``None``."""
    known = dict(METRICS + PROBE_METRICS)
    if metric not in known:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(known)}")
    points = [(s.step, getattr(s, metric)) for s in curve.steps if getattr(s, metric) is not None]
    return [x for x, _ in points], [float(y) for _, y in points]


def title(curves: Sequence[Curve]) -> str:
    """``"learning curves · sgcd_envs/Tau3Airline-v0 · seeds 0, 1"``."""
    envs = sorted({c.env for c in curves})
    seeds = sorted({c.seed for c in curves if c.seed is not None})
    seed_part = f" · seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else ""
    return f"learning curves · {', '.join(envs)}{seed_part}"


def _int_ticks(curves: Sequence[Curve], n: int = 3) -> list[int]:
    """Up to ``n`` whole steps spread over the steps of every curve."""
    steps = sorted({s.step for c in curves for s in c.steps})
    lo, hi = steps[0], steps[-1]
    if hi - lo < n:
        return list(range(lo, hi + 1))
    return sorted({round(lo + i * (hi - lo) / (n - 1)) for i in range(n)})


def terminal_plot(curves: Sequence[Curve], *, width: int = 100, height: int = 16, color: bool = True) -> str:
    """The curves as text: a title line, four panels side by side (one per metric, one marker
    and colour per run, or per method — the mean over its seeds — when a method has several
    runs), a second row of four for the probe when the runs have one, and a legend line;
    ``width`` characters wide, ``height`` lines per row of panels. With ``color=False`` the text
    has no ANSI codes."""
    import plotext

    if not curves:
        raise ValueError("terminal_plot needs at least one curve")
    heading = title(curves)
    if any(len(runs) > 1 for runs in by_method(curves).values()):
        curves = seed_means(curves)  # several seeds of a method: their mean, one marker per method
    if width < 60 or height < 8:
        raise ValueError(f"terminal_plot needs at least 60 × 8 characters, got {width} × {height}")
    plotext.terminal.limit(False, False)  # the size asked for, not the (maybe absent) terminal's
    fig = plotext.figure  # plotext draws on one module-level figure: start it afresh
    fig.clear()
    rows = panels(curves)
    fig.subplots(len(rows), len(METRICS))
    fig.theme("simple")  # colour on the signals only
    fig.canvas("default")  # and no painted background: the terminal's own shows through
    fig.plot_size(width, len(rows) * (height - 2))  # the title and legend lines take the other two
    ticks = _int_ticks(curves)
    cells = [(row, col, metric, name) for row, metrics in enumerate(rows, start=1)
             for col, (metric, name) in enumerate(metrics, start=1)]
    for row, col, metric, name in cells:
        panel = fig.subplot(row, col)
        panel.title(name)
        panel.legend(False)  # one shared legend line below: a legend per panel would hide the data
        panel.ruler("x").ticks(ticks, [str(t) for t in ticks])
        top = 1.0 if metric in RATES else max([1.0] + [v for c in curves for v in series(c, metric)[1]])
        panel.ruler("y").lim(0.0, top)
        for i, curve in enumerate(curves):
            xs, ys = series(curve, metric)
            if xs:
                panel.draw(panel.signal(xs, ys, marker=MARKERS[i % len(MARKERS)]))
    text = str(fig.build())
    fig.clear()
    plotext.terminal.clear()
    if not color:
        text = plotext.uncolorize(text)
    legend = "   ".join(f"{MARKERS[i % len(MARKERS)]} {c.label}" for i, c in enumerate(curves))
    return "\n".join([heading, text.rstrip("\n"), legend])


@dataclass(frozen=True)
class Learning:
    """How one method's train reward moved in its runs (one per seed): the first step's reward
    against the mean of the last ``last`` steps."""

    method: str
    seeds: tuple[int | None, ...]
    first: tuple[float, ...]
    """Step 1's train reward, per run."""
    final: tuple[float, ...]
    """Mean train reward of the last steps, per run."""
    last: int
    metric: str = "reward_mean"
    """Which train reward: ``probe_reward`` (the fixed probe tasks and draws) when every run has
    it, else ``reward_mean`` (the step's rollouts, which also move with the tasks drawn)."""

    @property
    def gains(self) -> tuple[float, ...]:
        """``final − first`` per run."""
        return tuple(b - a for a, b in zip(self.first, self.final))

    @property
    def mean_gain(self) -> float:
        return sum(self.gains) / len(self.gains)

    @property
    def spread(self) -> float:
        """Range of the gain across runs, max − min (0 with one run)."""
        return max(self.gains) - min(self.gains)

    @property
    def learns(self) -> bool | None:
        """Whether the mean gain exceeds the spread across seeds (None with fewer than 2 runs:
        one seed cannot say)."""
        return None if len(self.gains) < 2 else self.mean_gain > self.spread


def learning(curves: Sequence[Curve], *, last: int = 2) -> list[Learning]:
    """Per method (in order of first appearance), its runs' first-step and last-``last``-steps
    train reward: the probe's when every one of the method's runs has it at those steps, else
    the rollouts'; runs with fewer than ``last + 1`` steps are left out (no first and last apart)."""
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    out = []
    for method, runs in by_method([c for c in curves if len(c.steps) > last]).items():
        probed = all(s.probe_reward is not None for c in runs for s in (c.steps[0], *c.steps[-last:]))
        metric = "probe_reward" if probed else "reward_mean"
        firsts = tuple(float(getattr(c.steps[0], metric)) for c in runs)
        finals = tuple(sum(float(getattr(s, metric)) for s in c.steps[-last:]) / last for c in runs)
        out.append(Learning(method, tuple(c.seed for c in runs), firsts, finals, last, metric))
    return out


def _values_at(runs: Sequence[Curve], metric: str, steps: Sequence[int]) -> list[list[float]]:
    """Per step, the runs' values of ``metric`` there (those that have one)."""
    maps = [dict(zip(*series(run, metric))) for run in runs]
    return [[m[k] for m in maps if k in m] for k in steps]


def by_method(curves: Sequence[Curve]) -> dict[str, list[Curve]]:
    """The curves of each method, methods in order of first appearance."""
    out: dict[str, list[Curve]] = {}
    for curve in curves:
        out.setdefault(curve.method, []).append(curve)
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def seed_means(curves: Sequence[Curve]) -> list[Curve]:
    """One curve per method: at each step all its runs have, the mean of each metric over the
    runs (over those with a value, for action / no-write success); a method with one run keeps it."""
    out = []
    for method, runs in by_method(curves).items():
        if len(runs) == 1:
            out.append(runs[0])
            continue
        common = sorted(set.intersection(*({s.step for s in c.steps} for c in runs)))
        at = [{s.step: s for s in c.steps} for c in runs]
        steps = []
        for k in common:
            rows = [a[k] for a in at]
            steps.append(TrainStep(
                step=k, reward_mean=_mean([r.reward_mean for r in rows]),
                action_success=_mean([r.action_success for r in rows]),
                no_write_success=_mean([r.no_write_success for r in rows]),
                write_calls=_mean([r.write_calls for r in rows]), episodes=sum(r.episodes for r in rows),
                updated=any(r.updated for r in rows), loss=_mean([r.loss for r in rows]),
                groups_kept=sum(r.groups_kept for r in rows), groups_drawn=sum(r.groups_drawn for r in rows),
                step_s=_mean([r.step_s for r in rows]) or 0.0,
                **{m: _mean([getattr(r, m) for r in rows]) for m, _ in PROBE_METRICS}))
        seeds = ", ".join(str(c.seed) for c in runs)
        out.append(Curve(runs[0].run_id, method, runs[0].env, None, tuple(steps),
                         name=f"{method} (mean of seeds {seeds})"))
    return out


def write_png(curves: Sequence[Curve], path: str | PathLike[str], *, dpi: int = 100) -> Path:
    """Write the curves as a PNG: a row of four panels (train reward, action success, no-write
    success, writes / episode of the step's rollouts against the step) and, when the runs have a
    probe, a second row with the same on the probe; one line per run, titled with the env and
    the seeds. Returns the path; ``OSError`` when the file cannot be written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("write_png needs at least one curve")
    rows = panels(curves)
    fig = Figure(figsize=(14, 1.0 + 3.2 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)  # a canvas of its own: no pyplot state, no display
    axes = fig.subplots(len(rows), len(METRICS), sharex=True, squeeze=False).flatten()
    groups = by_method(curves)
    several = any(len(runs) > 1 for runs in groups.values())
    for ax, (metric, name) in zip(axes, [m for metrics in rows for m in metrics]):
        if several:  # per method: each seed faint, their mean bold, their range shaded
            for colour, (mean, runs) in enumerate(zip(seed_means(curves), groups.values())):
                c = f"C{colour}"
                for run in runs:
                    ax.plot(*series(run, metric), color=c, alpha=0.3, linewidth=0.8)
                xs, ys = series(mean, metric)
                ax.plot(xs, ys, color=c, marker="o", markersize=3, linewidth=1.8, label=mean.label)
                values = _values_at(runs, metric, xs)
                ax.fill_between(xs, [min(vs) for vs in values], [max(vs) for vs in values], color=c, alpha=0.15,
                                linewidth=0)
        else:
            for curve in curves:
                xs, ys = series(curve, metric)
                ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=curve.label)
        ax.set_title(name)
        if metric in RATES:
            ax.set_ylim(-0.03, 1.03)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[-len(METRICS):]:
        ax.set_xlabel("training step")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
    fig.suptitle(title(curves))
    out = Path(path)
    fig.savefig(out, format="png", dpi=dpi)
    return out
