"""sgcd_envs: Gymnasium text tool-use environments with verifier rewards.

Importing the package registers the Gymnasium ids below (``gymnasium.make(id)``). Adding an
env = one module (a :class:`~sgcd_envs.core.ToolUseEnv` subclass) + one ``register_env`` line.
"""

from .core import ParsedAction, ToolCall, ToolUseEnv, UserSimulator, parse_tool_calls
from .registry import ENVS, UnknownEnvError, env_ids, make, register_env

register_env(
    "sgcd_envs/Tau3Airline-v0",
    entry_point="sgcd_envs.tau3_airline.env:Tau3AirlineEnv",
    description="τ³-bench airline (50 tasks, DB × communicate reward)",
)
register_env(
    "sgcd_envs/AppWorld-v0",
    entry_point="sgcd_envs.appworld.env:AppWorldEnv",
    description="AppWorld (appworld 0.1.3.post1, own venv + worker process)",
    requires="the AppWorld venv (`sgcd-bench appworld setup`) and data ($APPWORLD_ROOT); tested in tests/appworld",
)

__all__ = ["ENVS", "ParsedAction", "ToolCall", "ToolUseEnv", "UnknownEnvError", "UserSimulator", "env_ids", "make",
           "parse_tool_calls", "register_env"]
