"""Envs from other installed packages: the ``sgcd_envs`` entry-point group.

A distribution registers envs by declaring, in its ``pyproject.toml``::

    [project.entry-points.sgcd_envs]
    mypkg = "mypkg.envs"            # a module whose import calls sgcd_envs.register_env(...)
    # or  mypkg = "mypkg.envs:register"   a zero-argument callable that does

The registry (:mod:`sgcd_envs.registry`) runs them once, on its first list or lookup. This
module only finds and runs entry points and describes the ones that fail; it knows nothing of
the registry.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

PLUGIN_GROUP = "sgcd_envs"
"""The entry-point group through which an installed distribution registers sgcd envs."""

_MAX_REASON = 300


def discover(group: str = PLUGIN_GROUP) -> list[EntryPoint]:
    """The installed entry points of ``group``, sorted by name (a stable load order)."""
    from importlib.metadata import entry_points  # here, not at import: ``import sgcd_envs`` stays cheap

    return sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value))


def dist_label(ep: EntryPoint) -> str:
    """``"name version"`` of the distribution that declares ``ep`` (or ``"unknown distribution"``)."""
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"


def plugin_label(ep: EntryPoint) -> str:
    """``"name (dist version)"``: how an entry point is named in listings and errors."""
    return f"{ep.name} ({dist_label(ep)})"


def run_plugin(ep: EntryPoint) -> None:
    """Import what ``ep`` names; call it if it is an attribute (it must take no arguments)."""
    target = ep.load()
    if isinstance(target, types.ModuleType):
        return
    if not callable(target):
        raise TypeError(f"{ep.value} is not a module or a callable (its type: {type(target).__name__})")
    target()


def one_line(err: BaseException) -> str:
    """``"ErrorType: message"`` on one line of at most a few hundred characters."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point of :data:`PLUGIN_GROUP` that failed to import or raised while registering."""

    name: str
    dist: str
    value: str
    reason: str

    @classmethod
    def of(cls, ep: EntryPoint, err: BaseException) -> BrokenPlugin:
        return cls(ep.name, dist_label(ep), ep.value, one_line(err))

    def __str__(self) -> str:
        return f"{self.name} ({self.dist}) = {self.value}: {self.reason}"
