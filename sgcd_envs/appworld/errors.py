"""Typed errors of the AppWorld env: each message says what was wrong and what to do."""

from __future__ import annotations

SETUP_COMMAND = "sgcd-bench appworld setup (or: python -m sgcd_envs.appworld.setup)"
DATA_HINT = (
    "AppWorld's task data is not shipped with sgcd-bench. On a machine with internet access run "
    "`appworld download data --root DIR` (from the AppWorld venv), copy DIR here and set "
    "APPWORLD_ROOT=DIR (the folder that contains data/), or pass root=DIR."
)


class AppWorldError(RuntimeError):
    """Base class of every AppWorld env error."""


class AppWorldVenvError(AppWorldError):
    """The AppWorld virtual environment is missing or broken (run the setup command)."""


class AppWorldDataError(AppWorldError):
    """No AppWorld data under the given root, or the split's task list is missing."""


class UnknownTaskError(AppWorldError, ValueError):
    """A task id that the split (or the data folder) does not contain."""


class AppWorldHungError(AppWorldError, TimeoutError):
    """The AppWorld worker did not answer in time while starting or loading a world."""


class AppWorldWorkerError(AppWorldError):
    """The AppWorld worker process died or broke the protocol outside an episode step."""
