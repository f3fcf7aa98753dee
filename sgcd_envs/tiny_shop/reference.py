"""What a perfect tiny-shop agent writes, for warm starts: :func:`reference_turns` (its raw
assistant texts) and :func:`reference_conversation` (the whole episode as OpenAI messages,
produced by running the env with those texts and the env's own user, so it is consistent with
the env by construction; a turn list that does not score 1 raises)."""

from __future__ import annotations

from typing import Any

from ..core import AGENT_STOP_TOKEN
from .env import TinyShopEnv
from .tasks import Task, get_task


def reference_turns(task_id: str, split: str | None = None) -> list[str]:
    """The assistant texts that solve ``task_id``: one Hermes call per reference action (each
    turn waits for its result), then the closing reply with ``###STOP###``."""
    task = get_task(task_id)
    if split is not None and split != task.split:
        raise ValueError(f"tiny-shop task {task_id!r} is in split {task.split!r}, not {split!r}")
    return [*(a.to_hermes() for a in task.actions), f"{task.reply} {AGENT_STOP_TOKEN}"]


def reference_conversation(task: Task | str) -> list[dict[str, Any]]:
    """The episode a perfect agent has on ``task`` (a Task or its id) with :class:`ShopUser`:
    the user's request, assistant messages with ``tool_calls``, the tool results and the final
    answer, as the env records them (no system message: build it from ``info["policy"]`` and
    ``info["tools"]``, as a rollout does)."""
    task = get_task(task) if isinstance(task, str) else task
    env = TinyShopEnv(split=task.split)
    env.reset(seed=0, options={"task_id": task.id})
    reward, ended = 0.0, False
    for turn in reference_turns(task.id):
        _, reward, terminated, truncated, _ = env.step(turn)
        ended = terminated or truncated
        if ended:
            break
    if not ended or reward != 1.0:
        raise RuntimeError(f"the reference turns of tiny-shop task {task.id} do not score 1 (reward {reward})")
    return env.messages
