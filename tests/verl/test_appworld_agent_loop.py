"""The AppWorld agent loop runs real ``sgcd_envs/AppWorld-v0`` episodes inside verl's agent-loop
machinery, against the same stand-in rollout server as the τ³ test.

Stand-ins (named as such): ``ScriptedRolloutServerStub`` and the byte-level tokenizer
(``_rollout_stand_ins.py``), and the task: sgcd-bench's own **fixture task** ``sgcdfixture_1``
(``sgcd_envs/appworld/fixture.py``), built at test time by the real AppWorld package; its
numbers are fixture numbers, never AppWorld numbers. Everything else is real: the loop is built
from the shipped ``configs/agent_loops.yaml`` entry with ``hydra.utils.instantiate`` as verl's
``AgentLoopWorker`` does, verl's Continuous-Token builder, the AppWorld engine in its own venv and
worker process, and AppWorld's own evaluation as the reward.

Needs both venvs: this module runs under ``.venv-verl`` and drives ``.venv-appworld`` through the
env's worker. Without the AppWorld venv it skips with the reason; with ``SGCD_REQUIRE_APPWORLD=1``
(set by scripts/test.sh under CI) it fails instead, as tests/appworld do. One worker process is
started for the whole session (the loop pools its env), plus the fixture build (~15 s); the venv
gate, the fixture root and the loop entry are session fixtures in ``conftest.py``.
"""

from __future__ import annotations

import pytest
import torch
from _appworld import FINISH, LOGIN, pooled, run_episode
from _rollout_stand_ins import CONFIG_DIR, byte_tokenizer
from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
from verl_required import verl  # noqa: F401  (skip / fail guard)

from adapters.verl import agent_loop as al
from sgcd_envs.appworld.fixture import FIXTURE_TASK_ID


@pytest.fixture(scope="module")
def entry(appworld_entry):
    """The ``appworld_agent`` entry on the fixture root (session fixture in conftest.py)."""
    return appworld_entry


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


_run = run_episode
_pooled = pooled


def test_registered_under_its_name_and_in_the_yaml() -> None:
    target = "adapters.verl.agent_loop.AppWorldAgentLoop"
    assert _agent_loop_registry[al.APPWORLD_AGENT_NAME]["_target_"] == target
    entries = {e.name: e for e in OmegaConf.load(CONFIG_DIR / "agent_loops.yaml")}
    assert entries["appworld_agent"]._target_ == target and entries["appworld_agent"].env_kwargs.split == "train"
    assert entries["appworld_dev_agent"].env_kwargs.split == "dev"


def test_two_turn_fixture_episode_gets_appworlds_reward_and_masks_its_output(entry, tokenizer) -> None:
    turns = [f"First I log in.\n```python\n{LOGIN}\n```", f"```python\n{FINISH}\n```"]
    out, server = _run(entry, tokenizer, turns)

    assert out.reward_score == 1.0 and out.extra_fields["success"] is True
    x = out.extra_fields
    assert x["env_id"] == al.APPWORLD_ENV_ID
    assert (x["task_id"], x["termination"], x["fixture"], x["split"]) == (FIXTURE_TASK_ID, "task_completed", True, "fixture")
    assert (x["num_tests"], x["num_passed"], x["num_failed"]) == (3, 3, 0) and x["feedback"] is None
    assert len(out.response_ids) == len(out.response_mask) == len(out.response_logprobs)
    prompt_text = tokenizer.decode(out.prompt_ids)
    assert prompt_text.startswith("<|im_start|>system\n") and "simple_note" in prompt_text and "FIXTURE task" in prompt_text
    # mask = 1 exactly on the stand-in server's tokens; AppWorld's output (a user turn) has mask 0
    generated = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if m])
    env_text = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if not m])
    assert generated.count("```python") == 2 and "complete_task" in generated
    assert "<|im_start|>user\nlogged in as fixture supervisor" in env_text and "```python" not in env_text
    assert 0 < sum(out.response_mask) < len(out.response_mask)
    assert torch.tensor(out.response_logprobs)[torch.tensor(out.response_mask) == 1].eq(-0.5).all()
    # the second generate() saw the prompt, turn 1 and AppWorld's output, in that order
    assert server.prompts[0] == out.prompt_ids and len(server.prompts) == 2
    assert server.prompts[1] == (out.prompt_ids + out.response_ids)[: len(server.prompts[1])]
    assert [m["role"] for m in x["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert len(_pooled()) == 1  # the env (and its worker) went back to the pool


def test_failing_episode_reuses_the_pooled_worker_and_reports_feedback(entry, tokenizer) -> None:
    (env,) = _pooled()
    pid = env.unwrapped.worker_pid
    out, _ = _run(entry, tokenizer, ["```python\napis.supervisor.complete_task(answer=99)\n```"])
    assert out.reward_score == 0.0 and out.extra_fields["termination"] == "task_completed"
    assert (out.extra_fields["num_passed"], out.extra_fields["num_failed"]) == (0, 3)
    assert "3 of 3 failed" in out.extra_fields["feedback"]
    assert _pooled() == [env] and env.unwrapped.worker_pid == pid  # same worker process, no restart


def test_episode_cut_by_the_turn_cap_is_not_evaluated(entry, tokenizer) -> None:
    out, server = _run(entry, tokenizer, [f"```python\n{LOGIN}\n```"],
                       "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=1")
    assert out.reward_score == 0.0 and out.extra_fields["termination"] == "max_assistant_turns"
    assert out.extra_fields["evaluated"] is None and len(server.prompts) == 1
    assert all(out.response_mask)  # only the assistant turn is in the response
