""":class:`TauEnv`: a τ domain as a Gymnasium text env (one episode = one task); a domain's env
subclasses it, setting ``domain`` and ``default_user`` and documenting itself."""

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


class TauEnv(ToolUseEnv):
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
        self.tasks: list[Task] = of_split(domain.tasks(self._data_dir), self.split)
        self._by_id = {t.id: t for t in self.tasks}
        self._base = domain.base_db(self._data_dir)
        self.policy = policy_text(self._data_dir)
        self._state: TauState | None = None

    def task_ids(self) -> list[str]:
        """The split's task ids, in order."""
        return [t.id for t in self.tasks]

    @property
    def state(self) -> TauState:
        """The episode's DB state (copy-on-write over the shared base)."""
        if self._state is None:
            raise RuntimeError("no episode yet; call reset() first")
        return self._state

    def state_fingerprint(self) -> frozenset[tuple[str, str, str | None]]:
        """Records whose content differs from the base DB, as (table, key, canonical dump)."""
        return changed_records(self.state)

    def _begin_episode(self, options: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
        unknown = set(options) - {"task_id"}
        if unknown:
            raise ValueError(f"Unknown reset option(s) {sorted(unknown)}; allowed: ['task_id']")
        if "task_id" in options:
            tid = str(options["task_id"])
            if tid not in self._by_id:
                raise ValueError(f"task_id {tid!r} is not in split {self.split!r}; its ids: {sorted(self._by_id, key=int)}")
            task = self._by_id[tid]
        else:
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        self._state = self.domain.state_type(self._base)
        return task, {"task_id": task.id, "split": task.split, "category": task.category, "policy": self.policy}

    def _run_tool(self, call: ToolCall) -> str:
        return self.domain.run_call(self.state, call)

    def _score(self, termination: str) -> dict[str, Any]:
        score = score_state(self.domain, self._task, self.state, self._messages, self._write_calls, termination,
                            self._data_dir)
        return {**score.as_info(), "task_id": self._task.id}
