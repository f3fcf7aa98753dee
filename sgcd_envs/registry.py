"""Registry of sgcd environments: one ``register_env`` line per env registers it with
Gymnasium too; :func:`make` gives a "Did you mean" error for an unknown id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from .core import did_you_mean


class UnknownEnvError(gym.error.NameNotFound):
    """An env id that is not in the sgcd registry."""


@dataclass(frozen=True)
class EnvEntry:
    id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    requires: str | None = None
    """What the env needs beyond this package to be built with its defaults (e.g. AppWorld's own
    venv and data); None = self-contained, so the shared test suite builds it directly."""


ENVS: dict[str, EnvEntry] = {}
"""Registered sgcd env ids → entries (the shared test suite is parametrized over this)."""


def register_env(env_id: str, entry_point: str, description: str = "", *, requires: str | None = None,
                 **kwargs: Any) -> None:
    """Register ``env_id`` (``sgcd_envs/<Name>-v<N>``) here and with ``gymnasium.register``."""
    if not env_id.startswith("sgcd_envs/"):
        raise ValueError(f"sgcd env ids live in the 'sgcd_envs/' namespace, got {env_id!r}")
    if env_id in ENVS:
        raise ValueError(f"env id {env_id!r} is already registered")
    ENVS[env_id] = EnvEntry(env_id, entry_point, dict(kwargs), description, requires)
    gym.register(id=env_id, entry_point=entry_point, kwargs=dict(kwargs), disable_env_checker=True)


def env_ids() -> list[str]:
    return sorted(ENVS)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` for a registered sgcd id; else a clear error."""
    if env_id not in ENVS:
        raise UnknownEnvError(
            f"Unknown environment {env_id!r}. Registered: {', '.join(env_ids())}.{did_you_mean(env_id, env_ids())}"
        )
    return gym.make(env_id, **kwargs)
