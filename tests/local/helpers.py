"""Helpers for the local-trainer tests: tiny random-initialised Llama models built from a config,
real τ³-airline envs, and a coin-flip user simulator (a test stand-in) that makes sibling rewards
differ."""

from __future__ import annotations

import random
from typing import Any

import gymnasium
import torch

import sgcd_envs  # noqa: F401  (registers the envs)
from adapters.local.prompting import ChatRenderer, system_prompt
from adapters.local.rollout import RolloutEngine
from sgcd_envs.tau3_airline import load_tasks

NO_WRITE_TRAIN = [t.id for t in load_tasks("train") if t.category == "no_write" and not t.communicate_info]


class CoinFlipUser:
    """TEST STAND-IN user: on each agent message ends the conversation (###STOP###) with
    probability ``p_stop``, seeded per episode, so siblings of one task get different rewards
    (an episode that is never stopped is cut by the turn budget: reward 0)."""

    name = "coin-flip-test-stand-in"

    def __init__(self, p_stop: float = 0.5) -> None:
        self.p_stop = p_stop
        self._rng = random.Random(0)

    def reset(self, task: Any, seed: int | None = None) -> str:
        self._rng = random.Random(seed)
        return "Hi, I need help with my reservation."

    def respond(self, messages: list[dict[str, Any]]) -> str:
        return "###STOP###" if self._rng.random() < self.p_stop else "Could you explain?"


def tiny_llama(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A 2-layer random Llama (tied head) built from a config: real transformers code, no weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(config).eval()


def make_engine(model, tokenizer, *, max_turns: int = 2, max_new_tokens: int = 6, p_stop: float = 0.5,
                temperature: float = 1.0) -> RolloutEngine:
    env = gymnasium.make("sgcd_envs/Tau3Airline-v0", split="train")
    _, info = env.reset(seed=0, options={"task_id": NO_WRITE_TRAIN[0]})
    renderer = ChatRenderer(tokenizer, system_prompt(info["policy"], info["tools"], variant="compact"))
    return RolloutEngine(
        model, tokenizer, renderer,
        lambda: gymnasium.make("sgcd_envs/Tau3Airline-v0", split="train", max_turns=max_turns,
                               user=CoinFlipUser(p_stop)),
        max_new_tokens=max_new_tokens, max_turns=max_turns, temperature=temperature,
    )
