"""What a training or evaluation command shows while it works.

In a terminal: a bar per method's training (steps, the live rollout — episodes ended and the
lockstep turn — and an ETA from the mean step time so far) and one per evaluation (episodes ended).
Not in a terminal (piped to a file, CI): one plain line per training step and per quarter of an
evaluation, with elapsed time, counts and reward, so a log shows where a run is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from adapters.local.rollout import RolloutProgress


def clock(seconds: float) -> str:
    """``h:mm:ss`` of a duration (whole seconds)."""
    return str(timedelta(seconds=max(0, round(seconds))))


def eta_s(elapsed_s: float, steps_done: int, steps_total: int, in_step_s: float) -> float | None:
    """Seconds left: the mean step time so far × steps left − the time the running step has
    had; None before the first step has ended."""
    if steps_done < 1:
        return None
    return max(0.0, elapsed_s / steps_done * (steps_total - steps_done) - in_step_s)


class Display:
    """Progress of one command: rich bars in a terminal, plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._progress: Progress | None = None

    @contextmanager
    def shown(self) -> Iterator[Display]:
        if not self.live:
            yield self
            return
        self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=self.console, transient=False)
        with self._progress:
            yield self
        self._progress = None

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def training(self, name: str, steps: int, done: int = 0) -> TrainingBar:
        task = self._progress.add_task(f"train {name}", total=steps, completed=done, status="") if self._progress \
            else None
        return TrainingBar(self, task, name, steps, done)

    def evaluation(self, name: str, split: str) -> EvaluationBar:
        task = self._progress.add_task(f"eval  {name}", total=None, status=f"{split} split") if self._progress \
            else None
        return EvaluationBar(self, task, name, split)


class TrainingBar:
    """One method's training: :meth:`rollout` per lockstep turn, :meth:`step` per finished step."""

    def __init__(self, display: Display, task: TaskID | None, name: str, steps: int, done: int) -> None:
        self.display, self.task, self.name, self.steps = display, task, name, steps
        self.first_step, self.done = done, done
        self.started = self.step_started = time.perf_counter()

    def _eta(self) -> str:
        now = time.perf_counter()
        left = eta_s(self.step_started - self.started, self.done - self.first_step, self.steps - self.first_step,
                     now - self.step_started)
        return "ETA after the first step" if left is None else f"ETA {clock(left)}"

    def _turn(self, phase: str, where: RolloutProgress) -> None:
        if self.task is None:
            return
        self.display._progress.update(self.task, status=f"step {self.done + 1}: {phase} {where.done}/{where.total} "
                                      f"episodes ended, turn {where.turn}/{where.max_turns} · {self._eta()}")

    def rollout(self, where: RolloutProgress) -> None:
        self._turn("rollout", where)

    def step(self, summary: str) -> None:
        now = time.perf_counter()
        self.done += 1
        if self.task is not None:
            self.step_started = now
            self.display._progress.update(self.task, completed=self.done, status=f"{summary} · {self._eta()}")
            return
        step_s = now - self.step_started
        self.step_started = now
        self.display._line(f"train {self.name} step {self.done}/{self.steps} · {clock(step_s)} "
                           f"(elapsed {clock(now - self.started)}, {self._eta()}) · {summary}")


class EvaluationBar:
    """One evaluation: :meth:`rollout` per lockstep turn (episodes ended), :meth:`finished` at the end."""

    def __init__(self, display: Display, task: TaskID | None, name: str, split: str) -> None:
        self.display, self.task, self.name, self.split = display, task, name, split
        self.next_quarter = 1
        self.started = time.perf_counter()

    def rollout(self, where: RolloutProgress) -> None:
        if self.task is not None:
            self.display._progress.update(self.task, total=where.total, completed=where.done,
                                          status=f"{self.split} split, turn {where.turn}/{where.max_turns}")
            return
        if where.done < where.total and where.done * 4 >= self.next_quarter * where.total:
            self.display._line(f"eval  {self.name} {where.done}/{where.total} episodes ended · "
                               f"{clock(where.elapsed_s)} · turn {where.turn}/{where.max_turns}")
            self.next_quarter = where.done * 4 // where.total + 1

    def finished(self, episodes: int, pass_rate: float) -> None:
        status = f"pass@1 {pass_rate:.3f}"
        if self.task is not None:
            self.display._progress.update(self.task, total=episodes, completed=episodes, status=status)
            return
        self.display._line(f"eval  {self.name} {episodes}/{episodes} episodes · "
                           f"{clock(time.perf_counter() - self.started)} · {status}")


__all__ = ["Display", "EvaluationBar", "TrainingBar", "clock", "eta_s"]
