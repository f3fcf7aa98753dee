"""sgcd_envs: Gymnasium text tool-use environments with verifier rewards.

Importing the package registers the Gymnasium ids below (``gymnasium.make(id)``). Adding an
env = one module (a :class:`~sgcd_envs.core.ToolUseEnv` subclass with a ``task_ids()`` method)
+ one ``register_env`` call, which also carries everything else sgcd-bench knows about the env
(:class:`~sgcd_envs.registry.EnvEntry`). Another installed package adds envs through the
``sgcd_envs`` entry-point group (:mod:`sgcd_envs.plugins`), loaded on the registry's first lookup.
"""

from .core import ParsedAction, ToolCall, ToolUseEnv, UserSimulator, parse_tool_calls
from .outcome import TASK_CATEGORIES, EpisodeOutcome, episode_outcome
from .plugins import PLUGIN_GROUP, BrokenPlugin
from .registry import (ENVS, EnvEntry, UnknownEnvError, broken_plugins, env_entry, env_ids, load_plugins, make,
                       register_env, unregister_env)

TAU_FAMILY = "τ-family"
"""The suite of the τ-bench domains (one overall leaderboard table across them)."""

register_env(
    "sgcd_envs/Tau3Airline-v0",
    entry_point="sgcd_envs.tau3_airline.env:Tau3AirlineEnv",
    description="τ³-bench airline (50 tasks, DB × communicate reward)",
    alias="tau3-airline",
    suite=TAU_FAMILY,
    title="τ³-airline",
    write_tools="sgcd_envs.tau3_airline.tools:WRITE_TOOLS",
    task_categories=TASK_CATEGORIES,
    takes_user=True,
    turn_budget="max_turns",
    stand_in_user="sgcd_envs.tau3_airline.scripted_user:ScriptedUser",
    agent_names=("tau3_airline_agent",),
    reference_turns="sgcd_envs.tau3_airline.demonstration:reference_turns",
)
register_env(
    "sgcd_envs/Tau2Retail-v0",
    entry_point="sgcd_envs.tau2_retail.env:Tau2RetailEnv",
    description="τ²-bench retail (114 tasks, DB × communicate reward)",
    alias="tau2-retail",
    suite=TAU_FAMILY,
    title="τ²-retail",
    agent_names=("tau2_retail_agent",),
    write_tools="sgcd_envs.tau2_retail.tools:WRITE_TOOLS",
    task_categories=TASK_CATEGORIES,
    takes_user=True,
    turn_budget="max_turns",
    stand_in_user="sgcd_envs.tau2_retail.scripted_user:ScriptedUser",
    reference_turns="sgcd_envs.tau2_retail.demonstration:reference_turns",
)
register_env(
    "sgcd_envs/Tau2Telecom-v0",
    entry_point="sgcd_envs.tau2_telecom.env:Tau2TelecomEnv",
    description="τ²-bench telecom (2,285 tasks, dual control: the user has tools; assertion × action reward)",
    alias="tau2-telecom",
    suite=TAU_FAMILY,
    title="τ²-telecom",
    agent_names=("tau2_telecom_agent",),
    write_tools="sgcd_envs.tau2_telecom.tools:WRITE_TOOLS",
    task_categories=TASK_CATEGORIES,
    takes_user=True,
    turn_budget="max_turns",
    stand_in_user="sgcd_envs.tau2_telecom.scripted_user:ScriptedUser",
    reference_turns="sgcd_envs.tau2_telecom.demonstration:reference_turns",
)
register_env(
    "sgcd_envs/TinyShop-v0",
    entry_point="sgcd_envs.tiny_shop.env:TinyShopEnv",
    description="Tiny shop: procedural 1-4-call tool use a ~100M model can learn (the CartPole of tool use)",
    alias="tiny-shop",
    title="Tiny shop",
    write_tools="sgcd_envs.tiny_shop.world:WRITE_TOOLS",
    task_categories=TASK_CATEGORIES,
    takes_user=True,
    turn_budget="max_turns",
    own_user="sgcd_envs.tiny_shop.user:ShopUser",
    reference_turns="sgcd_envs.tiny_shop.reference:reference_turns",
)
register_env(
    "sgcd_envs/AppWorld-v0",
    entry_point="sgcd_envs.appworld.env:AppWorldEnv",
    description="AppWorld (appworld 0.1.3.post1, own venv + worker process)",
    requires="the AppWorld venv (`sgcd-bench appworld setup`) and data ($APPWORLD_ROOT); tested in tests/appworld",
    alias="appworld",
    title="AppWorld",
    turn_budget="max_steps",
    fixture_splits=("fixture",),  # sgcd_envs.appworld.env.FIXTURE_SPLIT, kept unimported here
    goal_completion=True,
    action_format="code",
    agent_names=("appworld_agent", "appworld_dev_agent"),
)

__all__ = ["ENVS", "PLUGIN_GROUP", "TASK_CATEGORIES", "BrokenPlugin", "EnvEntry", "EpisodeOutcome", "ParsedAction",
           "ToolCall", "ToolUseEnv", "UnknownEnvError", "UserSimulator", "broken_plugins", "env_entry", "env_ids",
           "episode_outcome", "load_plugins", "make", "parse_tool_calls", "register_env", "unregister_env"]
