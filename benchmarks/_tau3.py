"""Shared by the τ³ rollout benchmarks (``rollout_speed.py``, ``step_overhead.py``): the local
rollout engine on the first τ³-airline train tasks, with the scripted stand-in user (so their
rewards are not τ³ benchmark numbers), and the device sync that timing needs."""

from __future__ import annotations

import gymnasium
import torch

import sgcd_envs  # noqa: F401  (registers the envs)
from adapters.local.prompting import ChatRenderer, system_prompt
from adapters.local.rollout import RolloutEngine
from sgcd_envs.tau3_airline import ScriptedUser, load_tasks


def tau3_engine(model: torch.nn.Module, tokenizer, *, tasks: int, max_turns: int, max_new_tokens: int,
                prompt: str) -> tuple[RolloutEngine, list[str]]:
    """A rollout engine over τ³-airline's train split and the ids of its first ``tasks`` tasks."""
    task_ids = [t.id for t in load_tasks("train")][:tasks]
    env = gymnasium.make("sgcd_envs/Tau3Airline-v0", split="train")
    _, info = env.reset(seed=0, options={"task_id": task_ids[0]})
    env.close()
    renderer = ChatRenderer(tokenizer, system_prompt(info["policy"], info["tools"], variant=prompt))

    def make_env():
        return gymnasium.make("sgcd_envs/Tau3Airline-v0", split="train", max_turns=max_turns,
                              user=ScriptedUser(max_user_turns=max_turns))

    engine = RolloutEngine(model, tokenizer, renderer, make_env, max_new_tokens=max_new_tokens, max_turns=max_turns)
    return engine, task_ids


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA), so wall-clock timings include it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
