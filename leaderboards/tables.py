"""Leaderboard tables: rows computed from the result store, rendered with rich, exported.

One table per environment. Row kinds:

* ``run`` — one of our runs, scored on its latest stored evaluation;
* ``baseline`` — a run whose method is ``do-nothing`` (the agent never calls a tool), scored
  from its stored episodes like any run: the floor that no-write tasks give for free;
* ``reference`` — a number *reported* by the SGCD paper (:mod:`leaderboards.reference`), shown
  below a rule, dimmed, with its source; never computed here.

Runs whose setting is a stand-in carry notes, explained in the table caption, read from the
run's stored :class:`~leaderboards.store.StandIns`: ``stand-in user``, ``fixture world``,
``compact prompt``, ``offline summarizer``. A run evaluated with several trials per task at
temperature 0 (greedy, so every trial repeats the first) carries ``greedy trials``: its pass^k
cells are marked, since they only repeat pass@1.

Every measured row says what it measured: ``run`` (the store's run id, ``#12``), ``tasks×trials``
(tasks evaluated × trials per task; ``20×1-3`` when tasks ran unequally often) and ``steps``
(the optimizer steps the run trained before its evaluation; ``—`` for the do-nothing baseline,
an ``eval``-only run and reference rows).

What a table shows of an env (its title, the paper's reference rows of its family, TGC / SGC,
the action / no-write columns) comes from the env's registration in :mod:`sgcd_envs`; a stored
env that is no longer registered gets a plain table under its id.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sgcd_common import did_you_mean

from . import metrics
from .collapse import COLLAPSE_FLAG
from .curves import Learning
from .reference import CITATION, ReferenceResult, references_for
from .store import ResultStore, RunRecord

if TYPE_CHECKING:
    from sgcd_envs.registry import EnvEntry

__all__ = [
    "EXPORT_FORMATS",
    "LeaderboardRow",
    "SuiteRow",
    "export",
    "leaderboard_rows",
    "leaderboard_tables",
    "learning_table",
    "print_leaderboard",
    "stand_in_notes",
    "suite_rows",
]

DO_NOTHING = "do-nothing"
"""Method name of the do-nothing baseline run (matched ignoring case, "-", "_" and spaces)."""

EXPORT_FORMATS = ("markdown", "csv", "json")

Kind = Literal["run", "baseline", "reference"]

NOTE_LEGEND = {
    "stand-in user": "scripted stand-in user simulator, not the benchmark's LLM user: not benchmark numbers",
    "fixture world": "a small fixture world built for tests: not AppWorld benchmark numbers",
    "compact prompt": "compact prompt variant, not the faithful benchmark system prompt",
    "offline summarizer": "SGCD credit reference from the offline contrast summarizer (stand-in for an LLM)",
}
REFERENCE_LEGEND = f"reference rows: {CITATION}; model Qwen3.5-4B"
BASELINE_LEGEND = "baseline: a do-nothing agent (no tool calls), scored from its stored episodes"
COLLAPSE_LEGEND = "⚠ tool-use collapse: write calls / action success fell far below their start while the headline held"
GREEDY_NOTE = "greedy trials"
GREEDY_LEGEND = ("trials at eval temperature 0 repeat one greedy trial, so pass^k (marked G) only repeats "
                 "pass@1: not a consistency measure")
EVAL_ONLY = "eval"
"""Method name of a run that evaluates a model without training it (``sgcd-bench eval``)."""


@dataclass(frozen=True)
class LeaderboardRow:
    """One leaderboard line. Rates are fractions in [0, 1]; ``tgc``/``sgc`` in percent;
    ``None`` = not applicable or not reported. ``pass_hat_k`` maps k ≥ 2 → pass^k."""

    kind: Kind
    env: str
    method: str
    split: str | None = None
    model: str | None = None
    seed: int | None = None
    user_simulator: str | None = None
    summarizer: str | None = None
    preset: str | None = None
    run_id: int | None = None
    status: str | None = None
    step: int | None = None
    n_tasks: int | None = None
    n_episodes: int | None = None
    trials: int | None = None
    """Fewest trials of any task (the ``×trials`` of ``tasks×trials``)."""
    trials_max: int | None = None
    """Most trials of any task (equals ``trials`` when every task ran equally often)."""
    steps: int | None = None
    """Optimizer steps the run trained before this evaluation; None for a baseline, an eval-only
    run and a reference row (``step`` is the evaluation's stored step, 0 for those runs)."""
    eval_temperature: float | None = None
    """The run's stored eval temperature (its config), None where it did not store one."""
    greedy_trials: bool = False
    """Several trials per task at eval temperature 0: the trials repeat one greedy trial."""
    pass_at_1: float | None = None
    pass_hat_k: dict[int, float] = field(default_factory=dict)
    action_pass: float | None = None
    no_write_pass: float | None = None
    write_calls_per_episode: float | None = None
    tokens_per_s: float | None = None
    wall_s: float | None = None
    run_wall_s: float | None = None
    tgc: float | None = None
    sgc: float | None = None
    flags: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    source: str | None = None


def _norm(s: str | None) -> str:
    return "".join(ch for ch in (s or "").lower() if ch.isalnum())


def _entry(env: str) -> EnvEntry:
    """The env's registration, or a bare one (its id as title, no reference rows) for an env id
    that is not registered (any more)."""
    import sgcd_envs
    from sgcd_envs.registry import EnvEntry

    return sgcd_envs.ENVS.get(env) or EnvEntry(env, entry_point="")


STAND_IN_NOTES = (("user", "stand-in user"), ("world", "fixture world"), ("prompt", "compact prompt"),
                  ("summarizer", "offline summarizer"))
"""(:class:`~leaderboards.store.StandIns` field, note), in the order notes are shown."""


def stand_in_notes(run: RunRecord) -> tuple[str, ...]:
    """The notes of the parts of a run's setting that are stand-ins."""
    return tuple(note for name, note in STAND_IN_NOTES if getattr(run.stand_ins, name))


def _run_wall(run: RunRecord) -> float | None:
    if not run.finished:
        return None
    return (datetime.fromisoformat(run.finished) - datetime.fromisoformat(run.created)).total_seconds()


def _eval_temperature(run: RunRecord) -> float | None:
    t = run.config.get("eval_temperature")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def _run_row(store: ResultStore, run: RunRecord, max_k: int) -> LeaderboardRow | None:
    ev = store.latest_evaluation(run.id)
    if ev is None:
        return None
    eps = store.episodes(ev.id)
    p1, trials = metrics.pass_at_1(eps)
    trials_max = metrics.trial_range(eps)[1]
    goals = _entry(run.env).goal_completion
    is_baseline = _norm(run.method) == _norm(DO_NOTHING)
    trained = not is_baseline and _norm(run.method) != _norm(EVAL_ONLY)
    temperature = _eval_temperature(run)
    greedy = temperature == 0 and trials_max > 1
    return LeaderboardRow(
        kind="baseline" if is_baseline else "run",
        env=run.env, method=run.method, split=ev.split, model=run.model, seed=run.seed,
        user_simulator=run.user_simulator, summarizer=run.summarizer, preset=run.preset,
        run_id=run.id, status=run.status, step=ev.step,
        n_tasks=len(metrics.task_counts(eps)), n_episodes=len(eps), trials=trials, trials_max=trials_max,
        steps=ev.step if trained else None, eval_temperature=temperature, greedy_trials=greedy,
        pass_at_1=p1,
        pass_hat_k={k: metrics.pass_hat_k(eps, k) for k in range(2, min(trials, max_k) + 1)},
        action_pass=metrics.action_pass_rate(eps),
        no_write_pass=metrics.no_write_pass_rate(eps),
        write_calls_per_episode=metrics.write_calls_per_episode(eps),
        tokens_per_s=ev.tokens_per_s, wall_s=ev.wall_s, run_wall_s=_run_wall(run),
        tgc=metrics.tgc(eps) if goals else None,
        sgc=metrics.sgc(eps) if goals else None,
        flags=dict(run.flags), notes=stand_in_notes(run) + ((GREEDY_NOTE,) if greedy else ()),
    )


def _reference_row(env: str, ref: ReferenceResult) -> LeaderboardRow:
    return LeaderboardRow(
        kind="reference", env=env, method=ref.method, split=ref.split, model=ref.model,
        n_tasks=ref.n_tasks, trials=ref.trials, trials_max=ref.trials,
        pass_at_1=ref.pass_at_1, action_pass=ref.action_pass, tgc=ref.tgc,
        notes=(("reported, not measured here",) + ((ref.note,) if ref.note else ())),
        source=ref.source,
    )


def _references(env: str) -> list[ReferenceResult]:
    return references_for(_entry(env).reference_family)


def leaderboard_rows(
    store: ResultStore,
    env: str | None = None,
    *,
    include_reference: bool = True,
    max_k: int = 4,
) -> dict[str, list[LeaderboardRow]]:
    """env id → rows: do-nothing baselines, then our runs by pass@1 (best first), then the
    paper's reference rows for that env family. Runs without any evaluation are skipped.
    pass^k is computed for 2 ≤ k ≤ min(trials, max_k)."""
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k}")
    tables: dict[str, list[LeaderboardRow]] = {}
    for run in store.runs(env):
        row = _run_row(store, run, max_k)
        if row is not None:
            tables.setdefault(run.env, []).append(row)
    if env is not None and env not in tables and include_reference and _references(env):
        tables[env] = []
    for name, rows in tables.items():
        rows.sort(key=lambda r: (r.kind != "baseline", -(r.pass_at_1 or 0.0), r.run_id or 0))
        if include_reference:
            rows.extend(_reference_row(name, ref) for ref in _references(name))
    return tables


@dataclass(frozen=True)
class SuiteRow:
    """One method and model across a suite's domains (:attr:`EnvEntry.suite`): the newest
    evaluated run of that method, model and preset on each domain."""

    kind: Kind
    method: str
    model: str | None
    preset: str | None
    domains: dict[str, LeaderboardRow]
    """env id → the domain's row, in the suite table's domain order."""

    @property
    def overall(self) -> float:
        """The domains' mean pass@1, each domain weighing the same:
        ``overall = (1/D) Σ_d pass@1_d`` (a domain's own pass@1 is its mean over tasks)."""
        return sum(r.pass_at_1 or 0.0 for r in self.domains.values()) / len(self.domains)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for r in self.domains.values() for n in r.notes))


def suite_rows(tables: dict[str, list[LeaderboardRow]]) -> dict[str, tuple[list[str], list[SuiteRow]]]:
    """suite → (its domains with a measured row, in table order; one :class:`SuiteRow` per method,
    model and preset measured on every one of them, best overall first), for each suite with
    measured rows on two or more domains. A method measured on fewer domains gets no row, so every
    overall averages the same domains."""
    domains: dict[str, list[str]] = {}
    for env, rows in tables.items():
        suite = _entry(env).suite
        if suite is not None and any(r.kind != "reference" for r in rows):
            domains.setdefault(suite, []).append(env)
    out = {}
    for suite, envs in domains.items():
        if len(envs) < 2:
            continue
        newest: dict[tuple[Any, ...], dict[str, LeaderboardRow]] = {}
        for env in envs:
            for r in sorted((r for r in tables[env] if r.kind != "reference"), key=lambda r: r.run_id or 0):
                newest.setdefault((r.kind, r.method, r.model, r.preset), {})[env] = r
        rows = [SuiteRow(kind, method, model, preset, {env: found[env] for env in envs})
                for (kind, method, model, preset), found in newest.items() if len(found) == len(envs)]
        rows.sort(key=lambda r: (r.kind != "baseline", -r.overall))
        out[suite] = (envs, rows)
    return out


def _suite_columns(envs: Sequence[str], compact: bool) -> list[tuple[str, Any]]:
    def domain(env: str):
        return lambda r: f"{_f(r.domains[env].pass_at_1)} (#{r.domains[env].run_id})"

    cols: list[tuple[str, Any]] = [("row", _label),
                                   ("method", lambda r: r.method), ("model", lambda r: r.model or "—"),
                                   ("preset", lambda r: r.preset or "—")]
    cols += [(f"{_entry(env).display_title} pass@1 (run)", domain(env)) for env in envs]
    cols.append(("overall pass@1", lambda r: _f(r.overall)))
    join = (lambda notes: " ".join(NOTE_CODES[n] for n in notes if n in NOTE_CODES)) if compact else "; ".join
    cols.append(("notes", lambda r: join(r.notes)))
    return cols


def _suite_caption(envs: Sequence[str], rows: Sequence[SuiteRow], compact: bool) -> list[str]:
    titles = ", ".join(_entry(env).display_title for env in envs)
    lines = [f"overall = mean of the {len(envs)} domains' pass@1 ({titles}), each domain weighing the same; "
             "a row needs a run of its method, model and preset on every domain (the newest one each)"]
    notes = {n for r in rows for n in r.notes}
    lines += [f"{f'[{NOTE_CODES[n]}] ' if compact else ''}{n}: {NOTE_LEGEND[n]}" for n in NOTE_LEGEND if n in notes]
    return lines


def _suite_table(suite: str, envs: Sequence[str], rows: Sequence[SuiteRow], compact: bool) -> Table:
    cols = _suite_columns(envs, compact)
    table = Table(title=f"{suite} overall leaderboard", caption="\n".join(_suite_caption(envs, rows, compact)),
                  caption_justify="left")
    for header, _ in cols:
        table.add_column(header, justify="right" if "pass@1" in header else "left", overflow="fold")
    for r in rows:
        table.add_row(*[Text(fn(r)) for _, fn in cols])
    return table


# --------------------------------------------------------------------------- columns

Column = tuple[str, Any]  # (header, row -> str)


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _label(row: LeaderboardRow) -> str:
    return {"run": "ours", "baseline": "baseline", "reference": "reference"}[row.kind]


def _run_id(row: LeaderboardRow) -> str:
    return "—" if row.run_id is None else f"#{row.run_id}"


def _tasks_trials(row: LeaderboardRow) -> str:
    """``20×1``; ``20×1-3`` when tasks ran unequally often; ``—`` for what is not known (a
    reference row whose task or trial count the paper did not report)."""
    tasks = "—" if row.n_tasks is None else str(row.n_tasks)
    if row.trials is None:
        trials = "—"
    elif row.trials_max is not None and row.trials_max != row.trials:
        trials = f"{row.trials}-{row.trials_max}"
    else:
        trials = str(row.trials)
    return "—" if tasks == trials == "—" else f"{tasks}×{trials}"


def _steps(row: LeaderboardRow) -> str:
    return "—" if row.steps is None else str(row.steps)


def _pass_hat(row: LeaderboardRow, k: int) -> str:
    cell = _f(row.pass_hat_k.get(k))
    return f"{cell} G" if row.greedy_trials and k in row.pass_hat_k else cell


def _flags(row: LeaderboardRow) -> str:
    out = ["⚠ collapse" if f == COLLAPSE_FLAG else f for f in row.flags]
    return ", ".join(out)


NOTE_CODES = {"stand-in user": "U", "fixture world": "F", "compact prompt": "P",
              "offline summarizer": "S", GREEDY_NOTE: "G", "reported, not measured here": "R"}
"""One-letter note codes used by the compact terminal table (explained in its caption)."""

_SETTING_COLUMNS = (
    ("model", "model"), ("seed", "seed"), ("user sim", "user_simulator"), ("summarizer", "summarizer"),
    ("split", "split"),
)


def _shared_settings(rows: Sequence[LeaderboardRow]) -> dict[str, str]:
    """Settings columns whose value is the same on every measured row and not contradicted by
    a reference row (whose unreported settings are None): e.g. the model column stays while
    reference rows show Qwen3.5-4B."""
    measured = [r for r in rows if r.kind != "reference"]
    shared = {}
    for header, attr in _SETTING_COLUMNS:
        values = {getattr(r, attr) for r in measured}
        ref_values = {getattr(r, attr) for r in rows if r.kind == "reference"} - {None}
        if len(values) == 1 and ref_values <= values:
            v = values.pop()
            shared[header] = "—" if v is None else str(v)
    return shared


def _columns(env: str, rows: Sequence[LeaderboardRow], compact: bool = False) -> list[Column]:
    """The table's columns. ``compact`` (terminal) moves settings shared by every measured row
    into the caption and writes notes as one-letter codes, so the table fits ~120 columns."""
    entry = _entry(env)
    ks = sorted({k for r in rows for k in r.pass_hat_k})
    shared = _shared_settings(rows) if compact else {}
    cols: list[Column] = [("row", _label), ("run", _run_id), ("method", lambda r: r.method)]
    getters = {
        "model": lambda r: r.model or "—",
        "seed": lambda r: "—" if r.seed is None else str(r.seed),
        "user sim": lambda r: r.user_simulator or "—",
        "summarizer": lambda r: r.summarizer or "—",
    }
    cols += [(h, getters[h]) for h, _ in _SETTING_COLUMNS if h not in shared and h != "split"]
    if "split" not in shared:
        cols.append(("split", lambda r: r.split or "—"))
    cols += [
        ("tasks×trials", _tasks_trials),
        ("steps", _steps),
        ("pass@1", lambda r: _f(r.pass_at_1)),
    ]
    cols += [(f"pass^{k}", lambda r, k=k: _pass_hat(r, k)) for k in ks]
    if entry.goal_completion:
        cols += [("TGC %", lambda r: _f(r.tgc, 1)), ("SGC %", lambda r: _f(r.sgc, 1))]
    if entry.task_categories or any(r.action_pass is not None or r.no_write_pass is not None for r in rows):
        cols += [("action", lambda r: _f(r.action_pass)), ("no-write", lambda r: _f(r.no_write_pass))]
    cols += [
        ("writes/ep", lambda r: _f(r.write_calls_per_episode, 2)),
        ("tok/s", lambda r: _f(r.tokens_per_s, 1)),
        ("wall s", lambda r: _f(r.wall_s, 1)),
        ("flags", _flags),
    ]
    if compact:
        cols.append(("notes", lambda r: " ".join(NOTE_CODES[n] for n in r.notes if n in NOTE_CODES)))
    else:
        cols.append(("notes", lambda r: "; ".join(r.notes)))
    return cols


def _caption_lines(rows: Sequence[LeaderboardRow], compact: bool = False) -> list[str]:
    def code(note: str) -> str:
        return f"[{NOTE_CODES[note]}] " if compact else ""

    lines = []
    shared = _shared_settings(rows) if compact else {}
    if shared:
        lines.append("measured rows share: " + " · ".join(f"{h} {v}" for h, v in shared.items()))
    notes = {n for r in rows if r.kind != "reference" for n in r.notes}
    lines += [f"{code(n)}{n}: {NOTE_LEGEND[n]}" for n in NOTE_LEGEND if n in notes]
    greedy = [r for r in rows if r.greedy_trials]
    if greedy:
        lines.append(f"{code(GREEDY_NOTE)}{GREEDY_NOTE}: {GREEDY_LEGEND} (run "
                     + ", ".join(f"#{r.run_id}" for r in greedy) + ")")
    if any(r.kind == "baseline" for r in rows):
        lines.append(BASELINE_LEGEND)
    if not any(r.kind == "baseline" for r in rows) and any(r.kind == "run" for r in rows):
        lines.append("no do-nothing baseline run stored for this env")
    flagged = [r for r in rows if COLLAPSE_FLAG in r.flags]
    if flagged:
        lines.append(COLLAPSE_LEGEND)
        lines += [f"⚠ run {r.run_id} ({r.method}): {r.flags[COLLAPSE_FLAG]}" for r in flagged]
    if any(r.kind == "reference" for r in rows):
        lines.append(f"{code('reported, not measured here')}{REFERENCE_LEGEND}")
        lines += [f"reference {r.method} ({r.split}): {n}" for r in rows if r.kind == "reference"
                  for n in r.notes if compact and n not in NOTE_CODES]
    return lines


def _title(env: str) -> str:
    pretty = _entry(env).display_title
    return f"{pretty} leaderboard ({env})" if pretty != env else f"{env} leaderboard"


# --------------------------------------------------------------------------- rich


HIDE_ORDER = ("wall s", "tok/s", "split", "pass^4", "pass^3", "pass^2", "seed", "summarizer", "user sim", "model",
              "writes/ep", "SGC %", "no-write")
"""Columns a narrow terminal drops first (the caption says which; exports keep them all)."""


def _table(name: str, rows: Sequence[LeaderboardRow], compact: bool, hide: Sequence[str] = ()) -> Table:
    cols = [c for c in _columns(name, rows, compact) if c[0] not in hide]
    caption = _caption_lines(rows, compact)
    if hide:
        caption.append(f"narrow terminal: hidden columns {', '.join(hide)} (widen it, or export)")
    table = Table(title=_title(name), caption="\n".join(caption) or None, caption_justify="left")
    for header, _ in cols:
        numeric = header not in ("row", "run", "method", "model", "user sim", "summarizer", "split", "flags", "notes")
        table.add_column(header, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric)
    prev = None
    for r in rows:
        if prev is not None and r.kind != prev:
            table.add_section()
        style = "dim italic" if r.kind == "reference" else ("yellow" if COLLAPSE_FLAG in r.flags else None)
        table.add_row(*[Text(fn(r)) for _, fn in cols], style=style)
        prev = r.kind
    return table


def leaderboard_tables(
    store: ResultStore, env: str | None = None, *, include_reference: bool = True,
    compact: bool = True, width: int | None = None,
) -> list[Table]:
    """One rich Table per environment (see :func:`leaderboard_rows`), then one per suite whose
    domains were run with the same method and model (:func:`suite_rows`).

    ``compact`` moves settings shared by every measured row into the caption and writes notes
    as codes; ``width`` (a terminal's columns) drops columns in :data:`HIDE_ORDER` until the
    table fits, and says so in the caption.
    """
    out = []
    measure = Console(width=10_000, file=io.StringIO())  # measures natural widths
    for name, rows in leaderboard_rows(store, env, include_reference=include_reference).items():
        present = {h for h, _ in _columns(name, rows, compact)}
        hide: list[str] = []
        table = _table(name, rows, compact)
        for h in HIDE_ORDER:
            if width is None or measure.measure(table).maximum <= width:
                break
            if h in present:
                hide.append(h)
                table = _table(name, rows, compact, hide)
        out.append(table)
    for suite, (envs, rows) in suite_rows(leaderboard_rows(store, env, include_reference=False)).items():
        out.append(_suite_table(suite, envs, rows, compact))
    return out


def print_leaderboard(
    store: ResultStore, env: str | None = None, *, console: Console | None = None,
    include_reference: bool = True, compact: bool = True,
) -> None:
    """Print every environment's table, fitted to the console's width (or a one-line note
    when nothing is stored)."""
    console = console or Console()
    tables = leaderboard_tables(store, env, include_reference=include_reference, compact=compact,
                                width=console.width)
    if not tables:
        console.print(f"No evaluated runs in {store.path}" + (f" for env {env!r}" if env else ""))
    for t in tables:
        console.print(t)


# --------------------------------------------------------------------------- export


def _flat(row: LeaderboardRow, ks: Iterable[int]) -> dict[str, Any]:
    d = asdict(row)
    phk = d.pop("pass_hat_k")
    for k in ks:
        d[f"pass_hat_{k}"] = phk.get(k)
    d["tasks_x_trials"] = _tasks_trials(row)
    d["flags"] = "; ".join(f"{f}: {why}" for f, why in row.flags.items())
    d["notes"] = "; ".join(row.notes)
    return d


def _rows_flat(tables: dict[str, list[LeaderboardRow]]) -> list[dict[str, Any]]:
    ks = sorted({k for rows in tables.values() for r in rows for k in r.pass_hat_k})
    return [_flat(r, ks) for rows in tables.values() for r in rows]


def _markdown(tables: dict[str, list[LeaderboardRow]]) -> str:
    parts = []
    for name, rows in tables.items():
        cols = _columns(name, rows)
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        parts.append(f"### {_title(name)}\n")
        parts.append("| " + " | ".join(h for h, _ in cols) + " |")
        parts.append("|" + "|".join("---" for _ in cols) + "|")
        for r in rows:
            cells = [esc(fn(r)) for _, fn in cols]
            if r.kind == "reference":
                cells = [f"*{c}*" if c else c for c in cells]
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
        parts += [f"- {line}" for line in _caption_lines(rows)]
        parts.append("")
    for suite, (envs, rows) in suite_rows(tables).items():
        cols = _suite_columns(envs, compact=False)
        parts.append(f"### {suite} overall leaderboard\n")
        parts.append("| " + " | ".join(h for h, _ in cols) + " |")
        parts.append("|" + "|".join("---" for _ in cols) + "|")
        parts += ["| " + " | ".join(fn(r).replace("|", "\\|") for _, fn in cols) + " |" for r in rows]
        parts.append("")
        parts += [f"- {line}" for line in _suite_caption(envs, rows, compact=False)]
        parts.append("")
    return "\n".join(parts)


def export(
    store: ResultStore,
    fmt: str,
    path: str | PathLike[str],
    *,
    env: str | None = None,
    include_reference: bool = True,
) -> Path:
    """Write the leaderboard to ``path`` as ``markdown`` (``md``), ``csv`` or ``json``.

    CSV and JSON hold one flat record per row (all environments; ``kind`` tells runs,
    baselines and reference rows apart, ``pass_hat_<k>`` columns for k ≥ 2; ``run_id``,
    ``n_tasks``, ``trials`` / ``trials_max``, ``tasks_x_trials`` as the table shows it, ``steps``
    and ``greedy_trials`` say what each row measured). JSON also carries the legend of every
    note. Returns the path written.
    """
    key = {"md": "markdown"}.get(fmt, fmt)
    if key not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}. Choose one of: {', '.join(EXPORT_FORMATS)} (or md)."
                         + did_you_mean(fmt, [*EXPORT_FORMATS, "md"]))
    tables = leaderboard_rows(store, env, include_reference=include_reference)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if key == "markdown":
        text = _markdown(tables)
    elif key == "json":
        text = json.dumps(
            {
                "legend": {**NOTE_LEGEND, GREEDY_NOTE: GREEDY_LEGEND, "baseline": BASELINE_LEGEND,
                           "reference": REFERENCE_LEGEND, COLLAPSE_FLAG: COLLAPSE_LEGEND},
                "rows": _rows_flat(tables),
            },
            indent=2, ensure_ascii=False,
        )
    else:
        flat = _rows_flat(tables)
        header = list(flat[0]) if flat else [f.name for f in fields(LeaderboardRow) if f.name != "pass_hat_k"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=header)
        writer.writeheader()
        writer.writerows(flat)
        text = buf.getvalue()
    out.write_text(text, encoding="utf-8")
    return out


def learning_table(rows: Sequence[Learning]) -> Table:
    """Per method: train reward at step 1 and over the last steps, per seed, and whether the mean
    gain exceeds its spread across seeds (:class:`~leaderboards.curves.Learning`)."""
    last = rows[0].last if rows else 2
    sources = {"probe_reward": "probe (fixed train tasks)", "reward_mean": "the step's rollouts"}
    measured = ", ".join(dict.fromkeys(sources[r.metric] for r in rows)) or sources["reward_mean"]
    table = Table(title=f"train reward ({measured}): step 1 → mean of the last {last} steps, per seed",
                  title_justify="left")
    for name in ("method", "seeds", "step 1", f"last {last}", "gain", "mean gain", "spread", "gain > spread"):
        table.add_column(name, justify="left" if name in ("method", "seeds") else "right")
    for row in rows:
        per = lambda values: " ".join(f"{v:.2f}" for v in values)  # noqa: E731
        verdict = {None: "— (one seed)", True: "yes", False: "no"}[row.learns]
        table.add_row(row.method, " ".join("?" if s is None else str(s) for s in row.seeds), per(row.first),
                      per(row.final), " ".join(f"{g:+.2f}" for g in row.gains), f"{row.mean_gain:+.3f}",
                      f"{row.spread:.3f}", verdict)
    return table
