"""The warm start: reference replays are real episodes, and cloning them lowers the held-out loss."""

from __future__ import annotations

import gymnasium
import pytest
import torch

import sgcd_envs
from adapters.local.prompting import ChatRenderer, system_prompt
from adapters.local.rollout import RolloutEngine
from adapters.local.sft import SFTSettings, behaviour_clone, demonstrations, fits, held_out_loss
from sgcd_envs.tau3_airline import ScriptedUser, load_tasks

from tests.local.helpers import tiny_llama

TAU3 = "sgcd_envs/Tau3Airline-v0"


def tau3_engine(model, tokenizer, *, max_turns: int = 12, max_new_tokens: int = 448) -> RolloutEngine:
    env = gymnasium.make(TAU3, split="train")
    _, info = env.reset(seed=0, options={"task_id": load_tasks("train")[0].id})
    renderer = ChatRenderer(tokenizer, system_prompt(info["policy"], info["tools"], variant="compact"))
    return RolloutEngine(model, tokenizer, renderer,
                         lambda: gymnasium.make(TAU3, split="train", max_turns=max_turns, user=ScriptedUser()),
                         max_new_tokens=max_new_tokens, max_turns=max_turns)


def turns_of(task_id: str) -> list[str]:
    return sgcd_envs.env_entry("tau3-airline").demonstration(task_id, "train")


def shortest_tasks(n: int) -> list[str]:
    return sorted((t.id for t in load_tasks("train")), key=lambda i: sum(map(len, turns_of(i))))[:n]


def test_a_replay_holds_what_a_rollout_of_the_same_text_would(tokenizer):
    engine = tau3_engine(None, tokenizer)
    task = shortest_tasks(1)[0]
    turns = turns_of(task)
    ep = engine.replay(task, turns)
    assert ep.reward == 1.0 and ep.termination == "agent_stop"
    assert sum(ep.loss_mask) == sum(len(engine.renderer.encode(t)) + 1 for t in turns)  # each turn + its stop token
    assert [m["content"] for m in ep.messages if m["role"] == "assistant"] == turns
    assert ep.retokenization_mismatches == []


def test_every_tau3_train_reference_replays_to_reward_one(tokenizer):
    kept, dropped = demonstrations(tau3_engine(None, tokenizer), [t.id for t in load_tasks("train")], turns_of)
    assert dropped == 0 and len(kept) == 30


def test_demonstrations_the_policy_cannot_write_are_dropped(tokenizer):
    engine = tau3_engine(None, tokenizer, max_turns=3, max_new_tokens=32)
    ids = [t.id for t in load_tasks("train")]
    kept, dropped = demonstrations(engine, ids, turns_of)
    writable = [i for i in ids if fits(engine, turns_of(i))]
    assert [ep.task_id for ep in kept] == writable and dropped == 30 - len(writable) > 20
    assert all(len(turns_of(i)) <= 3 and max(len(engine.renderer.encode(t)) for t in turns_of(i)) < 32
               for i in writable)


def test_cloning_lowers_the_held_out_loss(tokenizer):
    torch.manual_seed(0)
    model = tiny_llama(len(tokenizer), seed=1)
    engine = tau3_engine(model, tokenizer)
    tasks = shortest_tasks(8)
    train, _ = demonstrations(engine, tasks[:6], turns_of)
    held, _ = demonstrations(engine, tasks[6:], turns_of)
    settings = SFTSettings(demos=6, held_out=2, epochs=4, lr=3e-3, batch_episodes=3)
    report = behaviour_clone(model, engine, train, held, settings)
    assert len(report.epoch_losses) == 4 and report.epoch_losses[-1] < report.epoch_losses[0]
    assert report.held_out_after < report.held_out_before - 0.5, report
    assert held_out_loss(model, engine.renderer.prefix_ids, held, pad_id=engine.pad_id,
                         batch_episodes=2) == pytest.approx(report.held_out_after, rel=1e-4)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="SFTSettings.epochs"):
        SFTSettings(epochs=0)
    with pytest.raises(ValueError, match="SFTSettings.lr"):
        SFTSettings(lr=float("nan"))
