"""The τ³-airline agent loop runs real episodes of ``sgcd_envs/Tau3Airline-v0`` inside verl's
agent-loop machinery, against a stand-in rollout server.

Stand-ins (named as such, in ``_rollout_stand_ins.py``): ``ScriptedRolloutServerStub`` replaces
verl's vLLM server manager and replays a fixed list of assistant texts as token ids; the
tokenizer is a tiny byte-level one built there (no download) with a minimal chat template.
Everything else is real: our composed verl config, verl's ``AgentLoopBase`` / Continuous-Token builder / ``AgentLoopOutput``, the env,
its scripted user (the env's own offline stand-in) and its verifier reward.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from verl_required import verl  # noqa: F401  (skip / fail guard)

from _rollout_stand_ins import ScriptedRolloutServerStub, byte_tokenizer, compose_config
from transformers import PreTrainedTokenizerFast

from adapters.verl.agent_loop import AGENT_NAME, Tau3AirlineAgentLoop
from sgcd_envs.tau3_airline.tasks import get_task
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, _agent_loop_registry


def _call(name: str, arguments: dict) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _run(turns: list[str], task_id: str, tokenizer: PreTrainedTokenizerFast):
    cfg = compose_config()
    server = ScriptedRolloutServerStub(tokenizer, turns)

    async def episode():
        # built inside the running event loop, as verl's AgentLoopWorker does
        loop = Tau3AirlineAgentLoop(
            trainer_config=DictConfigWrap(cfg), server_manager=server, tokenizer=tokenizer, processor=None,
            dataset_cls=None, data_config=DictConfigWrap(cfg.data), env_kwargs={"split": "all"},
        )
        return await loop.run({"temperature": 1.0}, extra_info={"task_id": task_id})

    return asyncio.run(episode()), server


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return byte_tokenizer()


def test_registered_under_its_name() -> None:
    assert _agent_loop_registry[AGENT_NAME]["_target_"] == "adapters.verl.agent_loop.Tau3AirlineAgentLoop"


def test_gold_episode_gets_reward_one_and_masks_env_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    task = get_task("21")
    turns = [_call(a.name, a.arguments) for a in task.actions] + ["Your flights and bags are updated. ###STOP###"]
    out, server = _run(turns, "21", tokenizer)

    assert out.reward_score == 1.0 and out.extra_fields["db_match"] in (True, 1, 1.0)
    assert out.extra_fields["termination"] == "agent_stop" and out.extra_fields["task_id"] == "21"
    assert len(out.response_ids) == len(out.response_mask) == len(out.response_logprobs)
    # the prompt is our system message + the user's first turn, tokenised by verl's builder
    prompt_text = tokenizer.decode(out.prompt_ids)
    assert prompt_text.startswith("<|im_start|>system\n") and "<|im_start|>user\n" in prompt_text
    # mask = 1 exactly on the tokens the stand-in server generated, 0 on tool results / user turns
    mask = torch.tensor(out.response_mask)
    generated = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if m])
    env_text = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if not m])
    assert generated.count("<tool_call>") == len(task.actions) and "###STOP###" in generated
    assert "<|im_start|>tool" in env_text and "<tool_call>" not in env_text
    assert 0 < int(mask.sum()) < len(mask)
    # each generate() call saw the full running context: prompt + every earlier token
    assert server.prompts[0] == out.prompt_ids
    assert all(len(a) < len(b) for a, b in zip(server.prompts, server.prompts[1:]))
    assert server.prompts[-1] == (out.prompt_ids + out.response_ids)[: len(server.prompts[-1])]
    assert out.extra_fields["messages"][-1]["role"] == "assistant"


def test_wrong_action_episode_gets_reward_zero(tokenizer: PreTrainedTokenizerFast) -> None:
    turns = [_call("cancel_reservation", {"reservation_id": "OBUT9V"}), "Done. ###STOP###"]
    out, _ = _run(turns, "21", tokenizer)
    assert out.reward_score == 0.0 and out.extra_fields["termination"] == "agent_stop"
    assert sum(out.response_mask) > 0
