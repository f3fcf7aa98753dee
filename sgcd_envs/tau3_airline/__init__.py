"""τ³-bench airline (sierra-research/tau2-bench a2c0247, MIT): data, tools, verifier, env.

Public: :func:`load_tasks`, :func:`evaluate_episode`, :data:`WRITE_TOOLS`,
:class:`Tau3AirlineEnv`, :class:`ScriptedUser` (offline stand-in user).
"""

from .data import MANIFEST, DataChecksumError, DataNotFoundError
from .env import Tau3AirlineEnv
from .reward import EpisodeScore, communicate_match, evaluate_episode, gold_state
from .scripted_user import ScriptedUser
from .state import AirlineState, states_equal, upstream_hash
from .tasks import SPLITS, Task, get_task, load_tasks
from .tools import TOOL_NAMES, WRITE_TOOLS, tool_specs

__all__ = [
    "MANIFEST", "SPLITS", "TOOL_NAMES", "WRITE_TOOLS", "AirlineState", "DataChecksumError", "DataNotFoundError",
    "EpisodeScore", "ScriptedUser", "Task", "Tau3AirlineEnv", "communicate_match", "evaluate_episode", "get_task",
    "gold_state", "load_tasks", "states_equal", "tool_specs", "upstream_hash",
]
