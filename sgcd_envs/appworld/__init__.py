"""AppWorld as a Gymnasium env; the real engine runs in its own venv and process.

Imports nothing from AppWorld (it pins pydantic<2): see ``env.py`` (the env), ``client.py``
(our side of the pipe), ``worker.py`` and ``fixture.py`` (run inside the AppWorld venv by file
path) and ``setup.py`` (creates the venv, checks data).
"""

from sgcd_envs.appworld.env import FIXTURE_SPLIT, AppWorldEnv, extract_code
from sgcd_envs.appworld.errors import (
    AppWorldDataError,
    AppWorldError,
    AppWorldHungError,
    AppWorldVenvError,
    AppWorldWorkerError,
    UnknownTaskError,
)

__all__ = [
    "AppWorldDataError",
    "AppWorldEnv",
    "AppWorldError",
    "AppWorldHungError",
    "AppWorldVenvError",
    "AppWorldWorkerError",
    "FIXTURE_SPLIT",
    "UnknownTaskError",
    "extract_code",
]
