""":class:`TauEnv`: a τ domain as a Gymnasium text env (one episode = one task); a domain's env
subclasses it, setting ``domain`` and ``default_user`` and documenting itself. :class:`TaskEnv`
is what every τ env shares, τ²-telecom's dual-control env included: a split's tasks, the
``task_id`` reset option and the episode state."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

from ..core import ToolCall, ToolUseEnv, UserSimulator
from .data import policy_text
from .domain import TauDomain
from .reward import score_state
from .state import TauState, changed_records
from .tasks import Task, check_split, of_split


class TaskEnv(ToolUseEnv):
    """A :class:`~sgcd_envs.core.ToolUseEnv` over a split's tasks (each with an ``id``): the
    subclass sets :attr:`split`, :attr:`tasks` (calling :meth:`_index`) and, at reset, the episode
    state from :meth:`_choose_task`'s task."""

    split: str
    tasks: list[Any]
    _state: Any = None

    def _index(self, tasks: list[Any]) -> None:
        self.tasks = tasks
        self._by_id = {t.id: t for t in tasks}

    def task_ids(self) -> list[str]:
        """The split's task ids, in upstream order."""
        return [t.id for t in self.tasks]

    @property
    def state(self) -> Any:
        """The episode's state (copy-on-write over the shared base)."""
        if self._state is None:
            raise RuntimeError("no episode yet; call reset() first")
        return self._state

    def _choose_task(self, options: dict[str, Any]) -> Any:
        """The task ``options["task_id"]`` names (of this split), else one drawn with ``self.np_random``."""
        unknown = set(options) - {"task_id"}
        if unknown:
            raise ValueError(f"Unknown reset option(s) {sorted(unknown)}; allowed: ['task_id']")
        if "task_id" not in options:
            return self.tasks[int(self.np_random.integers(len(self.tasks)))]
        tid = str(options["task_id"])
        if tid not in self._by_id:
            listed = sorted(self._by_id, key=lambda t: (len(t), t))
            shown = ", ".join(listed[:50]) + (f", ... ({len(listed)} in all; env.task_ids() lists them)"
                                             if len(listed) > 50 else "")
            raise ValueError(f"task_id {tid!r} is not in split {self.split!r}; its ids: {shown}")
        return self._by_id[tid]


class TauEnv(TaskEnv):
    """The shared τ env; see the domain subclasses for the full Gymnasium documentation.

    Arguments: ``split`` (``train``/``test``/``all``), ``user`` (default ``default_user()``, an
    offline stand-in), ``max_turns`` (100), ``max_tokens`` (None), ``data_dir`` (an upstream
    data folder, sha256-verified) and the :class:`~sgcd_envs.core.ToolUseEnv` options.
    """

    domain: ClassVar[TauDomain]
    default_user: ClassVar[Callable[[], UserSimulator]]

    def __init__(
        self,
        split: str = "train",
        user: UserSimulator | None = None,
        max_turns: int = 100,
        max_tokens: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        domain = self.domain
        super().__init__(domain.tool_specs(), user if user is not None else self.default_user(),
                         max_turns=max_turns, max_tokens=max_tokens, **kwargs)
        self.tool_error_types = domain.tool_errors
        self.split = check_split(split)
        self._data_dir = domain.data_dir(data_dir)
        self._index(of_split(domain.tasks(self._data_dir), self.split))
        self._base = domain.base_db(self._data_dir)
        self.policy = policy_text(self._data_dir)
        self._state: TauState | None = None

    def state_fingerprint(self) -> frozenset[tuple[str, str, str | None]]:
        """Records whose content differs from the base DB, as (table, key, canonical dump)."""
        return changed_records(self.state)

    def _begin_episode(self, options: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
        task = self._choose_task(options)
        self._state = self.domain.state_type(self._base)
        return task, {"task_id": task.id, "split": task.split, "category": task.category, "policy": self.policy}

    def _run_tool(self, call: ToolCall) -> str:
        return self.domain.run_call(self.state, call)

    def _score(self, termination: str) -> dict[str, Any]:
        score = score_state(self.domain, self._task, self.state, self._messages, self._write_calls, termination,
                            self._data_dir)
        return {**score.as_info(), "task_id": self._task.id}
