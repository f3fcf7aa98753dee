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
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from verl_required import verl  # noqa: F401  (skip / fail guard)

from _rollout_stand_ins import CONFIG_DIR, ScriptedRolloutServerStub, byte_tokenizer, compose_config
from omegaconf import OmegaConf
from transformers import PreTrainedTokenizerFast

from adapters.verl import agent_loop
from adapters.verl.agent_loop import AGENT_NAME, Tau3AirlineAgentLoop
from sgcd_envs.tau3_airline.tasks import get_task
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, _agent_loop_registry


def _call(name: str, arguments: dict) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _run(turns: list[str], task_id: str, tokenizer: PreTrainedTokenizerFast, turn_fields: list[dict] | None = None,
         loop_class=Tau3AirlineAgentLoop, env_kwargs: dict | None = None):
    cfg = compose_config()
    server = ScriptedRolloutServerStub(tokenizer, turns, turn_fields)

    async def episode():
        # built inside the running event loop, as verl's AgentLoopWorker does
        loop = loop_class(
            trainer_config=DictConfigWrap(cfg), server_manager=server, tokenizer=tokenizer, processor=None,
            dataset_cls=None, data_config=DictConfigWrap(cfg.data), env_kwargs=env_kwargs or {"split": "all"},
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


def test_retail_gold_episode_gets_reward_one() -> None:
    """τ²-retail through its own loop (``tau2_retail_agent``): the reference actions and the facts
    to communicate earn the verifier's 1.0; the rows' agent name and the registry agree."""
    from adapters.verl import dataset
    from adapters.verl.agent_loop import RETAIL_AGENT_NAME, RETAIL_ENV_ID, Tau2RetailAgentLoop
    from sgcd_envs.tau2_retail import get_task as retail_task

    tokenizer = byte_tokenizer()
    task = next(t for t in (retail_task(str(i)) for i in range(114)) if t.actions and t.communicate_info)
    turns = [_call(a.name, a.arguments) for a in task.actions] + [" ".join(task.communicate_info) + " ###STOP###"]
    out, _ = _run(turns, task.id, tokenizer, loop_class=Tau2RetailAgentLoop)
    assert out.reward_score == 1.0 and out.extra_fields["env_id"] == RETAIL_ENV_ID
    assert _agent_loop_registry[RETAIL_AGENT_NAME]["_target_"] == "adapters.verl.agent_loop.Tau2RetailAgentLoop"
    rows = dataset.rows("test", "tau2-retail")
    assert len(rows) == 40 and {(r["agent_name"], r["data_source"]) for r in rows} == {(RETAIL_AGENT_NAME, RETAIL_ENV_ID)}


def test_telecom_gold_episode_gets_reward_one_and_hides_the_users_tool_use() -> None:
    """τ²-telecom through its loop (``tau2_telecom_agent``, dual control): the reference turns,
    the user's part done by the stand-in user on its own phone, earn 1.0; the user's calls are not
    in the agent's messages or tokens; rows, registry and the yaml's ``full`` split agree."""
    from adapters.verl import dataset
    from adapters.verl.agent_loop import TELECOM_AGENT_NAME, TELECOM_ENV_ID, Tau2TelecomAgentLoop
    from sgcd_envs.tau2_telecom import load_tasks as telecom_tasks
    from sgcd_envs.tau2_telecom.demonstration import task_turns

    tokenizer = byte_tokenizer()
    task = next(t for t in telecom_tasks("test") if {a.requestor for a in t.actions} == {"assistant", "user"})
    out, _ = _run(task_turns(task), task.id, tokenizer, loop_class=Tau2TelecomAgentLoop, env_kwargs={"split": "full"})
    assert out.reward_score == 1.0 and out.extra_fields["env_id"] == TELECOM_ENV_ID
    assert out.extra_fields["user_tool_calls"] == sum(a.requestor == "user" for a in task.actions)
    assert all("requestor" not in m for m in out.extra_fields["messages"])
    user_calls = {a.call.name for a in task.actions if a.requestor == "user"}
    env_text = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if not m])
    assert "I did that." in env_text and all(f'"name": "{name}"' not in env_text for name in user_calls)
    assert _agent_loop_registry[TELECOM_AGENT_NAME]["_target_"] == "adapters.verl.agent_loop.Tau2TelecomAgentLoop"
    yaml_entry = next(e for e in OmegaConf.load(Path(agent_loop.__file__).parent / "configs" / "agent_loops.yaml")
                      if e.name == TELECOM_AGENT_NAME)
    assert yaml_entry.env_kwargs.split == "full"
    rows = dataset.rows("test", "tau2-telecom")
    assert len(rows) == 40 and {(r["agent_name"], r["data_source"]) for r in rows} == {(TELECOM_AGENT_NAME, TELECOM_ENV_ID)}


def test_wrong_action_episode_gets_reward_zero(tokenizer: PreTrainedTokenizerFast) -> None:
    turns = [_call("cancel_reservation", {"reservation_id": "OBUT9V"}), "Done. ###STOP###"]
    out, _ = _run(turns, "21", tokenizer)
    assert out.reward_score == 0.0 and out.extra_fields["termination"] == "agent_stop"
    assert sum(out.response_mask) > 0


def _gold_turns() -> list[str]:
    task = get_task("21")
    return [_call(a.name, a.arguments) for a in task.actions] + ["Your flights and bags are updated. ###STOP###"]


def test_weight_versions_span_every_turn_of_the_episode(tokenizer: PreTrainedTokenizerFast) -> None:
    """verl tags each trajectory with the weight versions it was generated across
    (``trainer_base._compute_metrics`` casts them with ``int``): min of the turns' mins, max of their maxes."""
    turns = _gold_turns()
    # turn 1 was resumed across a weight update (3 → 4); the last turn ran on versions 5 and 6
    fields = [{"global_steps": 4, "min_global_steps": 3, "max_global_steps": 4}]
    fields += [{"global_steps": 4, "min_global_steps": 4, "max_global_steps": 4}] * (len(turns) - 2)
    fields += [{"global_steps": 6, "min_global_steps": 5, "max_global_steps": 6}]
    out, _ = _run(turns, "21", tokenizer, fields)
    assert out.reward_score == 1.0
    assert (out.extra_fields["min_global_steps"], out.extra_fields["max_global_steps"]) == (3, 6)
    assert int(out.extra_fields["min_global_steps"]) <= int(out.extra_fields["max_global_steps"])


def test_speculative_decoding_counters_are_summed_over_turns(tokenizer: PreTrainedTokenizerFast) -> None:
    turns = [_call("cancel_reservation", {"reservation_id": "OBUT9V"}), "Done. ###STOP###"]
    spec = [{"spec_num_draft_tokens": 8, "spec_num_accepted_tokens": 5, "spec_num_verify_steps": 2},
            {"spec_num_draft_tokens": 4, "spec_num_accepted_tokens": 1, "spec_num_verify_steps": 1}]
    fields = [{"min_global_steps": 0, "max_global_steps": 0, **s} for s in spec]
    out, _ = _run(turns, "21", tokenizer, fields)
    assert (out.extra_fields["min_global_steps"], out.extra_fields["max_global_steps"]) == (0, 0)
    assert [out.extra_fields[k] for k in ("spec_num_draft_tokens", "spec_num_accepted_tokens",
                                          "spec_num_verify_steps")] == [12, 6, 3]


def test_weight_versions_are_none_when_the_server_reports_none(tokenizer: PreTrainedTokenizerFast) -> None:
    turns = [_call("cancel_reservation", {"reservation_id": "OBUT9V"}), "Done. ###STOP###"]
    out, _ = _run(turns, "21", tokenizer)
    assert out.extra_fields["min_global_steps"] is None and out.extra_fields["max_global_steps"] is None
    assert "spec_num_draft_tokens" not in out.extra_fields


# What a verl AgentLoopWorker does: read agent_loops.yaml into the registry (AgentLoopWorker.__init__),
# and only later, at the first episode, import our module through hydra's instantiate.
_WORKER_ORDER = """
import json, sys
from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
for entry in OmegaConf.load(sys.argv[1]):
    _agent_loop_registry[entry.name] = entry
import adapters.verl.agent_loop
print(json.dumps({name: OmegaConf.to_container(OmegaConf.create(dict(entry)))
                  for name, entry in _agent_loop_registry.items()}))
"""


def test_yaml_entries_survive_the_first_import_in_a_worker() -> None:
    """The in-code registration is a default: it never replaces an entry the yaml already put there."""
    yaml_path = CONFIG_DIR / "agent_loops.yaml"
    out = subprocess.run([sys.executable, "-c", _WORKER_ORDER, str(yaml_path)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    registry = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {e["name"]: e for e in OmegaConf.to_container(OmegaConf.load(yaml_path))}
    for name in ("tau3_airline_agent", "appworld_agent", "appworld_dev_agent"):
        assert registry[name] == expected[name], name
    assert registry["appworld_agent"]["env_kwargs"]["split"] == "train"
    assert registry["appworld_agent"]["env_kwargs"]["max_steps"] == 30
