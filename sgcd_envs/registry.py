"""Registry of sgcd environments: one ``register_env`` call per env registers it with Gymnasium
and holds everything the CLI, the run wiring, the leaderboards and the verl teacher know about
it, so nothing else names an env; :func:`make` gives a "Did you mean" error for an unknown id.

Metadata that needs the env's own (heavy) module, e.g. τ³'s write tools, may be given as a
``"module:NAME"`` reference that is imported on first use, so importing ``sgcd_envs`` stays cheap
and listing the envs needs no env's dependencies (AppWorld's venv included).

Envs from other installed packages come in through the :data:`~sgcd_envs.plugins.PLUGIN_GROUP` (``sgcd_envs``)
entry-point group (:mod:`sgcd_envs.plugins`): loaded once, on the first list or lookup
(:func:`env_ids`, :func:`aliases`, :func:`env_entry`, :func:`make`, reading :data:`ENVS`). A
plugin that fails is recorded in :func:`broken_plugins`, not raised, and is named in the
error for an unknown env.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import gymnasium as gym

from sgcd_common import did_you_mean, load_entry_point
from .outcome import TASK_CATEGORIES
from .plugins import BrokenPlugin, discover, plugin_label, run_plugin

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")
ActionFormat = Literal["tool_calls", "code"]
ACTION_FORMATS = ("tool_calls", "code")


class UnknownEnvError(gym.error.NameNotFound):
    """An env id or alias that is not in the sgcd registry."""


def resolved(value: T | str) -> T:
    """``value``, or the object a ``"module:NAME"`` reference names (imported now)."""
    return load_entry_point(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class EnvEntry:
    """One registered env: how Gymnasium builds it and what the rest of sgcd-bench reads about it."""

    id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    requires: str | None = None
    """What the env needs beyond this package to be built with its defaults (e.g. AppWorld's own
    venv and data); None = self-contained, so the shared test suite builds it directly."""
    alias: str | None = None
    """Short name for ``--env`` (e.g. ``tau3-airline``)."""
    title: str | None = None
    """Name of its leaderboard (default: the id)."""
    family: str | None = None
    """Benchmark family whose reported results are the leaderboard's reference rows (default: the alias)."""
    suite: str | None = None
    """The benchmark suite the env is one domain of (``τ-family`` for τ³-airline and τ²-retail):
    when a method and model were evaluated on several of its domains, the leaderboard adds the
    suite's overall table (:func:`leaderboards.tables.suite_rows`)."""
    write_tools: Collection[str] | str = ()
    """Names of the state-changing tools (for the offline summarizer), or a ``"module:NAME"`` of them."""
    task_categories: tuple[str, ...] = ()
    """The :data:`~sgcd_envs.outcome.TASK_CATEGORIES` its tasks carry in ``info["category"]``."""
    takes_user: bool = False
    """Whether its constructor takes ``user=`` (a :class:`~sgcd_envs.core.UserSimulator`)."""
    turn_budget: str | None = None
    """Its constructor option bounding agent turns (``max_turns``, ``max_steps``), if any."""
    stand_in_user: Callable[..., Any] | str | None = None
    """Offline stand-in user factory ``(max_user_turns=...) -> UserSimulator`` (or its ``"module:NAME"``)."""
    own_user: Callable[..., Any] | str | None = None
    """The env's own user factory ``() -> UserSimulator`` (or its ``"module:NAME"``):
    a deterministic user designed for the env (tiny shop's), not a stand-in for an LLM user, so
    its numbers are the env's own and carry no stand-in mark. At most one of it and ``stand_in_user``."""
    fixture_splits: tuple[str, ...] = ()
    """Splits that are a small fixture world of ours: their numbers are never benchmark numbers."""
    goal_completion: bool = False
    """Whether its leaderboard reports TGC / SGC (scenario = the task id before its last "_")."""
    action_format: ActionFormat = "tool_calls"
    """``tool_calls`` (tool schemas, results as tool messages) or ``code`` (Python code actions)."""
    agent_names: tuple[str, ...] = ()
    """Names of the verl agent loops that drive it."""
    reference_turns: Callable[[str, str], list[str]] | str | None = None
    """``(task_id, split) -> [assistant text, ...]``: the raw turns of an agent that solves the
    task (tool calls in Hermes format), for warm starts (``sgcd-bench sft``); or its ``"module:NAME"``."""
    plugin: str | None = None
    """The entry point that registered it (``name (dist version)``, set by the loader); None for
    an env registered by an import (sgcd_envs' own, a test's)."""

    @property
    def display_title(self) -> str:
        return self.title or self.id

    @property
    def reference_family(self) -> str:
        return self.family or self.alias or self.id

    def write_tool_names(self) -> frozenset[str]:
        return frozenset(resolved(self.write_tools))

    def demonstration(self, task_id: str, split: str) -> list[str]:
        """The assistant turns that solve ``task_id`` (``ValueError`` when the env has none)."""
        if self.reference_turns is None:
            raise ValueError(f"{self.id} registers no reference_turns: it has no demonstrations for a warm start")
        return list(resolved(self.reference_turns)(task_id, split))

    def new_own_user(self) -> Any:
        """A fresh user of the env's own, with its own defaults (``ValueError`` when the env has none)."""
        if self.own_user is None:
            raise ValueError(f"{self.id} registers no user of its own")
        return resolved(self.own_user)()

    def new_stand_in_user(self, max_user_turns: int) -> Any:
        """A fresh offline stand-in user (``ValueError`` when the env has none)."""
        if self.stand_in_user is None:
            raise ValueError(f"{self.id} registers no stand-in user; pass an LLM user")
        return resolved(self.stand_in_user)(max_user_turns=max_user_turns)


class _EnvTable(Mapping[str, EnvEntry]):
    """A read-only view of the registered entries that loads the plugins before any read."""

    def __getitem__(self, env_id: str) -> EnvEntry:
        load_plugins()
        return _ENTRIES[env_id]

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(list(_ENTRIES))

    def __len__(self) -> int:
        load_plugins()
        return len(_ENTRIES)


_ENTRIES: dict[str, EnvEntry] = {}
ENVS: Mapping[str, EnvEntry] = _EnvTable()
"""Registered sgcd env ids → entries, in registration order, plugins included (the shared test
suite is parametrized over this)."""

_lock = threading.RLock()
"""Guards the registry and the one plugin load (re-entrant: a plugin registers while loading)."""
_plugins: dict[str, Any] = {"loaded": False, "loading": None}
"""``loaded``: the plugins were loaded; ``loading``: the label of the plugin running now."""
_broken: list[BrokenPlugin] = []


def _who(entry: EnvEntry) -> str:
    """Who registered ``entry``, for a clash message."""
    source = f"plugin {entry.plugin}" if entry.plugin else "package " + entry.entry_point.split(":")[0].split(".")[0]
    return f"{source}, entry point {entry.entry_point}"


def _check_entry(entry: EnvEntry) -> None:
    if not entry.id.startswith("sgcd_envs/"):
        raise ValueError(f"sgcd env ids live in the 'sgcd_envs/' namespace, got {entry.id!r}")
    if entry.id in _ENTRIES:
        raise ValueError(f"env id {entry.id!r} is registered twice: by {_who(_ENTRIES[entry.id])} "
                         f"and by {_who(entry)}")
    taken = _aliases().get(entry.alias) if entry.alias is not None else None
    if taken is not None:
        raise ValueError(f"env alias {entry.alias!r} is registered twice: for {taken!r} by {_who(_ENTRIES[taken])} "
                         f"and for {entry.id!r} by {_who(entry)}")
    unknown = set(entry.task_categories) - set(TASK_CATEGORIES)
    if unknown:
        raise ValueError(f"task_categories must be among {TASK_CATEGORIES}, got {sorted(unknown)}")
    if entry.own_user is not None and (entry.stand_in_user is not None or not entry.takes_user):
        raise ValueError(f"{entry.id}: own_user needs takes_user=True and no stand_in_user (one user per env)")
    if entry.action_format not in ACTION_FORMATS:
        raise ValueError(f"action_format must be one of {ACTION_FORMATS}, got {entry.action_format!r}")


def register_env(env_id: str, entry_point: str, description: str = "", **fields: Any) -> EnvEntry:
    """Register ``env_id`` (``sgcd_envs/<Name>-v<N>``) here and with ``gymnasium.register``;
    ``fields`` are the other :class:`EnvEntry` fields (``kwargs`` go to the constructor).
    ``ValueError`` for an id or alias that is taken, naming both registrations."""
    with _lock:
        entry = EnvEntry(env_id, entry_point, description=description, plugin=_plugins["loading"], **fields)
        _check_entry(entry)
        _ENTRIES[env_id] = entry
        gym.register(id=env_id, entry_point=entry_point, kwargs=dict(entry.kwargs), disable_env_checker=True)
        return entry


def unregister_env(env_id: str) -> None:
    """Remove a registered env from here and from Gymnasium's registry (e.g. a test's own env)."""
    with _lock:
        _ENTRIES.pop(env_id, None)
        gym.envs.registry.pop(env_id, None)


def _load_plugin(ep: EntryPoint) -> None:
    """Run one entry point; if it fails, record it and drop whatever it had registered."""
    label = plugin_label(ep)
    _plugins["loading"] = label
    try:
        run_plugin(ep)
    except Exception as err:  # a broken plugin must not take the other envs down
        _broken.append(BrokenPlugin.of(ep, err))
        for env_id in [i for i, e in _ENTRIES.items() if e.plugin == label]:
            unregister_env(env_id)
    finally:
        _plugins["loading"] = None


def load_plugins() -> None:
    """Load every installed :data:`~sgcd_envs.plugins.PLUGIN_GROUP` entry point, once per process (thread-safe;
    later calls return at once, as do calls a plugin makes while it loads)."""
    if _plugins["loaded"]:
        return
    with _lock:
        if _plugins["loaded"] or _plugins["loading"] is not None:
            return
        try:
            for ep in discover():
                _load_plugin(ep)
        finally:
            _plugins["loaded"] = True


def broken_plugins() -> list[BrokenPlugin]:
    """The plugins that failed to load (each with its name, distribution and a one-line reason)."""
    load_plugins()
    return list(_broken)


def env_ids() -> list[str]:
    """The registered env ids, sorted (plugins included)."""
    load_plugins()
    return sorted(_ENTRIES)


def _aliases() -> dict[str, str]:
    return {e.alias: e.id for e in _ENTRIES.values() if e.alias is not None}


def aliases() -> dict[str, str]:
    """Alias → env id (plugins included)."""
    load_plugins()
    return _aliases()


def _unknown(name: str, known: Sequence[str]) -> UnknownEnvError:
    broken = f" An env plugin failed to load and may have provided it: {'; '.join(map(str, _broken))}" if _broken else ""
    return UnknownEnvError(f"Unknown environment {name!r}. Choose one of: {', '.join(known)}."
                           f"{did_you_mean(name, known)}{broken}")


def env_entry(name: str) -> EnvEntry:
    """The entry of an env id or alias; :class:`UnknownEnvError` with "Did you mean" (and the
    broken plugins, if any) otherwise."""
    env_id = aliases().get(name, name)
    if env_id not in _ENTRIES:
        raise _unknown(name, [*aliases(), *env_ids()])
    return _ENTRIES[env_id]


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` for a registered sgcd id; else a clear error."""
    load_plugins()
    if env_id not in _ENTRIES:
        raise _unknown(env_id, env_ids())
    return gym.make(env_id, **kwargs)
