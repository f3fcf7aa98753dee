"""Run wiring: the LLM users of one run share one counter, which the compare summary prints."""

from __future__ import annotations

from adapters.llm import LLMEndpoint
from sgcd_bench.presets import get_preset
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
