"""Teacher contexts for SGCD and SDPO from real τ³-airline episodes (env + offline stand-in summarizer)."""

from __future__ import annotations

import json

import gymnasium
import pytest
from verl_required import verl  # noqa: F401  (skip / fail guard)

import sgcd_envs  # noqa: F401
from adapters.llm.summarizer import OfflineSummarizer
from adapters.verl.agent_loop import system_prompt
from adapters.verl.teacher import Episode, sdpo_teacher_messages, sgcd_teacher_messages
from algorithms.credit_reference import REFERENCE_HEADER
from sgcd_envs.tau3_airline import WRITE_TOOLS
from sgcd_envs.tau3_airline.tasks import get_task


def _episode(uid: str, task_id: str, actions: list[tuple[str, dict]], final: str) -> Episode:
    env = gymnasium.make("sgcd_envs/Tau3Airline-v0", split="all")
    obs, info = env.reset(options={"task_id": task_id})
    prompt = [{"role": "system", "content": system_prompt(info["policy"], info["tools"])}, *obs[:1]]
    reward = 0.0
    for text in [f"<tool_call>{json.dumps({'name': n, 'arguments': a})}</tool_call>" for n, a in actions] + [final]:
        obs, reward, terminated, truncated, _ = env.step(text)
        if terminated or truncated:
            break
    return Episode(uid=uid, reward=float(reward), prompt_messages=prompt, messages=obs)


@pytest.fixture(scope="module")
def episodes() -> list[Episode]:
    gold = [(a.name, a.arguments) for a in get_task("21").actions]
    wrong = [("cancel_reservation", {"reservation_id": "OBUT9V"})]
    return [
        _episode("g1", "21", gold, "All updated. ###STOP###"),
        _episode("g1", "21", wrong, "Done. ###STOP###"),
        _episode("g2", "21", wrong, "Done. ###STOP###"),
        _episode("g2", "21", [], "I cannot help. ###STOP###"),
    ]


def test_episode_rewards_are_the_verifier_rewards(episodes: list[Episode]) -> None:
    assert [ep.reward for ep in episodes] == [1.0, 0.0, 0.0, 0.0]


def test_sgcd_reference_only_for_groups_with_contrast(episodes: list[Episode]) -> None:
    summarizer = OfflineSummarizer(write_tools=WRITE_TOOLS)
    teacher, metrics = sgcd_teacher_messages(episodes, summarizer)
    assert teacher[2] is None and teacher[3] is None
    for i in (0, 1):
        assert teacher[i] is not None and REFERENCE_HEADER in teacher[i][0]["content"]
        assert teacher[i][1:] == episodes[i].prompt_messages[1:]  # only the system message changes
    assert episodes[0].prompt_messages[0]["content"] not in ("", None)
    assert REFERENCE_HEADER not in episodes[0].prompt_messages[0]["content"]  # student prompt untouched
    assert metrics["sgcd/groups_with_reference"] == 1.0 and metrics["sgcd/groups_with_contrast"] == 1.0


def test_sdpo_reprompts_failures_with_a_successful_sibling(episodes: list[Episode]) -> None:
    teacher, mask = sdpo_teacher_messages(episodes)
    assert mask.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert teacher[0] is None and teacher[2] is None and teacher[3] is None
    assert "update_reservation_flights" in teacher[1][-1]["content"]


def test_sdpo_uses_feedback_only_without_a_solution(episodes: list[Episode]) -> None:
    with_fb = [Episode(e.uid, e.reward, e.prompt_messages, e.messages, feedback="db mismatch") for e in episodes]
    teacher, mask = sdpo_teacher_messages(with_fb)
    assert mask.tolist() == [0.0, 1.0, 1.0, 1.0]  # feedback is for failed attempts; the lone success has none
    assert "db mismatch" in teacher[2][-1]["content"] and "db mismatch" not in teacher[1][-1]["content"]
    _, mask_off = sdpo_teacher_messages(with_fb, use_feedback=False)
    assert mask_off.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_teacher_envs_are_read_from_the_env_registrations() -> None:
    from adapters.verl import teacher as te

    tau3 = "sgcd_envs/Tau3Airline-v0"
    assert te.teacher_tools(tau3) == gymnasium.make(tau3).unwrapped.tool_schemas()
    assert te.offline_summarizers()[tau3].write_tools == WRITE_TOOLS
    toy = "sgcd_envs/ToyCode-v0"  # registered here only: never built, its metadata is all the teacher reads
    sgcd_envs.register_env(toy, entry_point="no_such_module:Env", action_format="code", agent_names=("toy_agent",),
                           write_tools=("save",))
    try:
        assert te.env_id_of({"agent_name": "toy_agent"}) == toy
        assert te.teacher_tools(toy) is None
        assert te.offline_summarizers()[toy].write_tools == {"save"}
    finally:
        sgcd_envs.unregister_env(toy)
    with pytest.raises(ValueError, match="No teacher context for env_id='sgcd_envs/ToyCode-v0'"):
        te.teacher_env(toy)


def test_both_trainers_build_the_same_teacher_prompts_from_the_same_episodes(episodes: list[Episode]) -> None:
    """The verl plugin and the local trainer read an episode into the same Attempt, so the shared
    builders (algorithms.teacher_context) give both the same SGCD and SDPO teacher prompts."""
    from adapters.local.methods.base import attempt as local_attempt
    from adapters.local.rollout import Episode as LocalEpisode
    from adapters.verl.teacher import attempt as verl_attempt
    from algorithms import teacher_context as tc

    groups = {"g1": 0, "g2": 1}
    system = episodes[0].prompt_messages[0]["content"]
    local = [local_attempt(LocalEpisode(task_id="21", group=groups[ep.uid], messages=list(ep.messages),
                                        env_messages=list(ep.messages), reward=ep.reward), system)
             for ep in episodes]
    remote = [verl_attempt(ep) for ep in episodes]
    for a, b in zip(local, remote):
        assert (a.reward, a.prompt, a.conversation, a.steps, a.feedback) == \
               (b.reward, b.prompt, b.conversation, b.steps, b.feedback)
    summarizer = OfflineSummarizer(write_tools=WRITE_TOOLS)
    assert tc.sgcd_prompts(local, summarizer) == sgcd_teacher_messages(episodes, summarizer)
    assert tc.sdpo_prompts(local) == sdpo_teacher_messages(episodes)[0]
