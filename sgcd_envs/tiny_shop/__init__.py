"""Tiny shop (``sgcd_envs/TinyShop-v0``, alias ``tiny-shop``): the CartPole of tool use.

Its design, and why each choice, is in :class:`TinyShopEnv`'s docstring. Public:
:class:`TinyShopEnv`, :class:`ShopUser` (the env's own user), :func:`generate_task` and
:func:`get_task` (tasks from ``(seed, index)``), :func:`reference_turns` and
:func:`reference_conversation` (the perfect agent, for warm starts), :func:`gold_state`,
:data:`WRITE_TOOLS`, :data:`DO_NOTHING_SCORE`.
"""

from .env import POLICY, TinyShopEnv
from .reference import reference_conversation, reference_turns
from .reward import gold_state, score_state
from .tasks import (DO_NOTHING_SCORE, KIND_CYCLE, NO_WRITE_SCORE, SPLIT_SEEDS, TEST_SIZE, Task, generate_task,
                    get_task, task_ids)
from .user import ShopUser
from .world import CITIES, TOOL_NAMES, WRITE_TOOLS, Order, ShopTools, tool_specs

__all__ = [
    "CITIES", "DO_NOTHING_SCORE", "KIND_CYCLE", "NO_WRITE_SCORE", "POLICY", "SPLIT_SEEDS", "TEST_SIZE", "TOOL_NAMES",
    "WRITE_TOOLS", "Order", "ShopTools", "ShopUser", "Task", "TinyShopEnv", "generate_task", "get_task", "gold_state",
    "reference_conversation", "reference_turns", "score_state", "task_ids", "tool_specs",
]
