"""SGCD / SDPO teacher contexts for AppWorld episodes (issue: teacher follows the episode's env).

The episodes are real: sgcd-bench's fixture task ``sgcdfixture_1`` (a stand-in task, never
AppWorld numbers) run by the real ``appworld_agent`` loop and AppWorld engine, with the scripted
rollout server (a stand-in) writing the assistant turns. Their ``extra_fields`` go through
:func:`adapters.verl.teacher.episode_from_extra` exactly as the trainers read them from the
batch. Skips without the AppWorld venv; fails under ``SGCD_REQUIRE_APPWORLD=1`` (conftest.py).
"""

from __future__ import annotations

import pytest
from _appworld import FINISH, LOGIN, run_episode
from _rollout_stand_ins import byte_tokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl_required import verl  # noqa: F401  (skip / fail guard)

from adapters.verl import agent_loop as al
from adapters.verl import teacher as te
from algorithms.credit_reference import REFERENCE_HEADER
from sgcd_envs.appworld.env import POLICY

WRONG = "```python\napis.supervisor.complete_task(answer=99)\n```"


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture(scope="module")
def outputs(appworld_entry, tokenizer):
    """Agent-loop outputs: success, wrong answer, login + wrong answer (all on the fixture task)."""
    scripts = {
        "success": [f"I log in first.\n```python\n{LOGIN}\n```", f"```python\n{FINISH}\n```"],
        "wrong": [WRONG],
        "login_wrong": [f"```python\n{LOGIN}\n```", WRONG],
    }
    return {name: run_episode(appworld_entry, tokenizer, turns)[0] for name, turns in scripts.items()}


@pytest.fixture(scope="module")
def episodes(outputs) -> list[te.Episode]:
    """Group g1 = (success, wrong, login_wrong); group g2 = (wrong,) with no successful sibling."""
    spec = [("g1", "success"), ("g1", "wrong"), ("g1", "login_wrong"), ("g2", "wrong")]
    return [te.episode_from_extra(uid, outputs[name].reward_score, outputs[name].extra_fields) for uid, name in spec]


def test_episodes_carry_the_env_and_appworlds_feedback(episodes: list[te.Episode]) -> None:
    assert [ep.reward for ep in episodes] == [1.0, 0.0, 0.0, 0.0]
    assert {ep.env_id for ep in episodes} == {al.APPWORLD_ENV_ID}
    assert episodes[0].feedback is None and "3 of 3 failed" in episodes[1].feedback
    assert te.teacher_tools(al.APPWORLD_ENV_ID) is None  # the loop tokenises AppWorld prompts without tools


def test_feedback_from_extra_fields_then_reward_extra_info() -> None:
    base = {"env_id": al.APPWORLD_ENV_ID, "prompt_messages": [], "messages": []}
    assert te.episode_from_extra("u", 0.0, base | {"feedback": "loop text"}).feedback == "loop text"
    assert te.episode_from_extra("u", 0.0, base | {"reward_extra_info": {"feedback": "rm text"}}).feedback == "rm text"
    both = base | {"feedback": "loop text", "reward_extra_info": {"feedback": "rm text"}}
    assert te.episode_from_extra("u", 0.0, both).feedback == "loop text"
    assert te.episode_from_extra("u", 0.0, base | {"feedback": None}).feedback is None


def test_env_is_keyed_by_env_id_or_agent_name() -> None:
    assert te.env_id_of({"agent_name": "appworld_dev_agent"}) == al.APPWORLD_ENV_ID
    assert te.env_id_of({"agent_name": al.AGENT_NAME}) == al.ENV_ID
    with pytest.raises(ValueError, match="Did you mean 'appworld_agent'"):
        te.env_id_of({"agent_name": "appworld_agnt"})
    with pytest.raises(ValueError, match="Allowed: sgcd_envs/Tau3Airline-v0, .*sgcd_envs/AppWorld-v0"):
        te.env_id_of({"env_id": "sgcd_envs/AppWorld-v1"})


def test_code_actions_become_steps_with_appworlds_output(episodes: list[te.Episode]) -> None:
    steps = te.episode_steps(episodes[0])
    assert [s.tool for s in steps] == [te.APPWORLD_TOOL] * 2
    assert steps[0].arguments == {"code": LOGIN} and steps[1].arguments == {"code": FINISH}
    assert steps[0].text == "I log in first." and "logged in as fixture supervisor" in steps[0].result
    assert not any(s.is_error for s in steps)
    assert "```" not in steps[0].text  # the code is the call's argument, not repeated as prose


def test_sgcd_teacher_is_the_appworld_prompt_plus_an_appworld_reference(episodes: list[te.Episode], outputs,
                                                                         tokenizer) -> None:
    summarizers = te.offline_summarizers()
    teacher, metrics = te.sgcd_teacher_messages(episodes, summarizers)
    assert metrics["sgcd/groups_with_reference"] == 1.0 and teacher[3] is None
    assert summarizers[al.APPWORLD_ENV_ID].calls == 1 and summarizers[al.ENV_ID].calls == 0
    assert summarizers[al.APPWORLD_ENV_ID].write_tools == frozenset()
    for i in (0, 1, 2):
        system, student_system = teacher[i][0]["content"], episodes[i].prompt_messages[0]["content"]
        # the AppWorld system prompt (appworld_system_prompt) with the reference appended, nothing τ³
        assert student_system.startswith(POLICY) and "# Apps" in student_system and "simple_note" in student_system
        assert system.startswith(student_system.rstrip()) and REFERENCE_HEADER in system
        assert "<tool_call>" not in system and "###STOP###" not in system
        assert teacher[i][1:] == episodes[i].prompt_messages[1:]
    reference = teacher[0][0]["content"].split(REFERENCE_HEADER, 1)[1]
    assert "[DECISIVE] S2:" in reference and "create_note" in reference and te.APPWORLD_TOOL in reference
    # the teacher prompt is tokenised as the student's: same builder, the env's (no) tools
    builder = create_continuous_token_builder(tokenizer)
    tools = te.teacher_tools(episodes[0].env_id)
    assert builder.build_initial_tokens(episodes[0].prompt_messages, tools=tools) == list(outputs["success"].prompt_ids)
    teacher_ids = builder.build_initial_tokens(teacher[0], tools=tools)
    assert REFERENCE_HEADER in tokenizer.decode(teacher_ids) and len(teacher_ids) > len(outputs["success"].prompt_ids)


def test_sdpo_demonstration_is_the_successful_code_and_feedback_is_appworlds(episodes: list[te.Episode]) -> None:
    teacher, mask = te.sdpo_teacher_messages(episodes)
    assert mask.tolist() == [0.0, 1.0, 1.0, 1.0]
    demo = teacher[1][-1]["content"]
    # the successful sibling's conversation as it ran (lasgroup/SDPO shows the response text): its code
    # actions in full and AppWorld's output
    assert "assistant: " in demo and "complete_task(answer=count)" in demo and "user: Execution successful." in demo
    assert "3 of 3 failed" in teacher[3][-1]["content"]  # g2 has no success: AppWorld's failed tests
    assert teacher[1][0] == episodes[1].prompt_messages[0]  # the AppWorld system prompt, unchanged
    _, mask_off = te.sdpo_teacher_messages(episodes, use_feedback=False)
    assert mask_off.tolist() == [0.0, 1.0, 1.0, 0.0]
