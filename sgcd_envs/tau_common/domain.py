"""What a τ domain gives the shared machinery: its data folder, state type, base DB, tools."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import ToolCall, ToolSpec
from . import data
from .state import TauState
from .tasks import Task, all_tasks


@dataclass(frozen=True, eq=False)
class TauDomain:
    """One τ domain (compared and hashed by identity: one object per domain and process).

    ``base_db(path)`` returns the shared, never-mutated base DB of a verified folder (the same
    object on every call); ``run_call(state, call)`` runs one schema-valid call atomically and
    raises one of ``tool_errors`` for an agent mistake, changing nothing then.
    """

    label: str
    data: data.DataSpec
    state_type: type[TauState]
    base_db: Callable[[Path], Any]
    tool_specs: Callable[[], tuple[ToolSpec, ...]]
    run_call: Callable[[TauState, ToolCall], str]
    write_tools: frozenset[str]
    tool_errors: tuple[type[BaseException], ...]
    failing_reference_actions: Mapping[str, int] = field(default_factory=dict)
    """Task id → how many of its reference actions fail by design (upstream's gold replay logs
    and skips them; so does ours); for any other task, or another count, the data or the tools
    are not the pinned version."""

    def data_dir(self, data_dir: str | os.PathLike[str] | None = None) -> Path:
        """The resolved and sha256-verified data folder."""
        return data.data_dir(self.data, data_dir)

    def tasks(self, path: Path) -> tuple[Task, ...]:
        """Every task of a verified folder, in upstream order."""
        return all_tasks(path, self.write_tools)

    def fresh_state(self, path: Path) -> TauState:
        """An episode state over the folder's base DB, nothing touched yet."""
        return self.state_type(self.base_db(path))
