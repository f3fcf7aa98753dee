"""Run wiring: the LLM users of one run share one counter, which the compare summary prints."""

from __future__ import annotations

from adapters.llm import LLMEndpoint
from leaderboards.store import StandIns
from sgcd_bench.presets import get_preset, with_overrides
from sgcd_bench.run import make_pieces


def test_llm_users_of_a_run_share_one_counter(tmp_path):
    endpoint = LLMEndpoint(base_url="http://127.0.0.1:9/v1", model="user-model")  # never called here
    pieces = make_pieces(get_preset("cpu"), "sgcd_envs/Tau3Airline-v0", llm_user=endpoint, llm_summarizer=None,
                         cache_dir=tmp_path)
    first, second = pieces.make_env("train").unwrapped, pieces.make_env("train").unwrapped
    assert first.user is not second.user
    assert first.user.stats is second.user.stats is pieces.user_stats
    first.user.stats.empty_agent_turns += 1
    assert pieces.user_stats.summary().startswith("1 empty agent turn nudged, 0 failures")


def test_the_scripted_user_has_no_counter(tmp_path):
    pieces = make_pieces(get_preset("cpu"), "sgcd_envs/Tau3Airline-v0", llm_user=None, llm_summarizer=None,
                         cache_dir=tmp_path)
    assert pieces.user_stats is None and pieces.user_label == "scripted-stand-in"


def test_each_env_gets_its_own_write_tools_and_user_from_its_registration(tmp_path):
    from sgcd_envs.tau3_airline import WRITE_TOOLS

    cpu = get_preset("cpu")
    tau3 = make_pieces(cpu, "sgcd_envs/Tau3Airline-v0", llm_user=None, llm_summarizer=None, cache_dir=tmp_path)
    appworld = make_pieces(cpu, "sgcd_envs/AppWorld-v0", llm_user=None, llm_summarizer=None, cache_dir=tmp_path)
    assert tau3.summarizer.write_tools == WRITE_TOOLS and tau3.user_is_stand_in
    assert appworld.summarizer.write_tools == frozenset()  # built without AppWorld's venv
    assert appworld.user_label == "none (env has no user)" and not appworld.user_is_stand_in
    fixture = make_pieces(with_overrides(cpu, eval_split="fixture", prompt_variant="compact"), "sgcd_envs/AppWorld-v0",
                          llm_user=None, llm_summarizer=None, cache_dir=tmp_path)
    assert fixture.stand_ins(prompt=True, summarizer=True) == StandIns(summarizer=True, prompt=True, world=True)


def test_the_llm_user_of_a_telecom_run_gets_the_user_tools(tmp_path):
    """``--user-base-url`` on τ²-telecom: each env's LLM user is bound to the 30 user tools
    (dual control through OpenAI tool calling); on τ³-airline it has none."""
    endpoint = LLMEndpoint(base_url="http://127.0.0.1:9/v1", model="user-model")  # never called here
    telecom = make_pieces(get_preset("cpu"), "sgcd_envs/Tau2Telecom-v0", llm_user=endpoint, llm_summarizer=None,
                          cache_dir=tmp_path)
    env = telecom.make_env("small").unwrapped
    assert [t["function"]["name"] for t in env.user.tools] == [s["function"]["name"] for s in env.user_tool_schemas()]
    assert len(env.user.tools) == 30
    airline = make_pieces(get_preset("cpu"), "sgcd_envs/Tau3Airline-v0", llm_user=endpoint, llm_summarizer=None,
                          cache_dir=tmp_path)
    assert airline.make_env("train").unwrapped.user.tools is None
