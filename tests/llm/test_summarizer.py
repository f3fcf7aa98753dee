"""LLMSummarizer (over the loopback stub server) and the OfflineSummarizer stand-in."""

from __future__ import annotations

from collections import Counter

from algorithms.credit_reference import OFFLINE_SOURCE, Step, StepRef
from adapters.llm import LLMSummarizer, OfflineSummarizer
from adapters.llm.summarizer import MAX_FAILURE_CAUSES, _cause_key
from tests.llm.openai_stub import Reply

SUCCESS = [
    Step(1, "", "get_reservation_details", {"reservation_id": "EHGLP3"}, '{"status": "ok"}'),
    Step(2, "", "cancel_reservation", {"reservation_id": "EHGLP3"}, '{"status": "cancelled"}'),
    Step(3, "Done, it is cancelled."),
]
FAILED = [
    Step(1, "", "get_reservation_details", {"reservation_id": "EHGLP3"}, '{"status": "ok"}'),
    Step(2, "I cannot cancel that.", result="user: ###STOP###"),
]
ANSWER = """1. [DECISIVE] S2: cancelling EHGLP3 is what the customer asked for.
2. [ERROR] F1.2: refused although the policy allowed the cancellation.
3. [CORRECTION] F1.2: call cancel_reservation for EHGLP3."""


def test_llm_summarizer_parses_a_good_answer(stub_server, make_client):
    stub_server.push(ANSWER)
    summ = LLMSummarizer(make_client())
    ref = summ.reference("Cancel EHGLP3.", SUCCESS, [FAILED])
    assert ref is not None and ref.source == "llm:stub-model"
    assert [(i.kind, i.step) for i in ref.items] == [
        ("decisive", StepRef(0, 2)), ("error", StepRef(1, 2)), ("correction", StepRef(1, 2))]
    (body,) = stub_server.requests
    assert body["messages"][0]["role"] == "system"
    assert "S2. call cancel_reservation" in body["messages"][1]["content"]
    assert (summ.calls, summ.failures, summ.cache_hits) == (1, 0, 0)


def test_llm_summarizer_garbage_answer_returns_none_and_counts(stub_server, make_client):
    stub_server.push("As an AI language model I cannot help with that.", ANSWER)
    client = make_client(cache=True)
    summ = LLMSummarizer(client)
    assert summ.reference("Cancel EHGLP3.", SUCCESS, [FAILED]) is None
    assert (summ.calls, summ.failures) == (1, 1)
    assert summ.failure_reasons["parse"] == 1 and "no numbered lines" in summ.last_error
    # the garbage was evicted from the cache: the next call asks the server again
    assert summ.reference("Cancel EHGLP3.", SUCCESS, [FAILED]) is not None
    assert len(stub_server.requests) == 2 and summ.failures == 1


def test_llm_summarizer_out_of_range_labels_only_is_a_failure(stub_server, make_client):
    stub_server.push("1. [DECISIVE] S9: invented step\n2. [ERROR] F4.1: no such sibling")
    summ = LLMSummarizer(make_client())
    assert summ.reference("t", SUCCESS, [FAILED]) is None and summ.failures == 1


def test_llm_summarizer_server_failure_returns_none_and_counts(stub_server, make_client):
    stub_server.push(*[Reply(status=500)] * 3)
    summ = LLMSummarizer(make_client(max_retries=1))
    assert summ.reference("t", SUCCESS, [FAILED]) is None
    assert summ.failure_reasons["llm"] == 1 and "HTTP 500" in summ.last_error
    assert len(stub_server.requests) == 2


def test_llm_summarizer_timeout_returns_none(stub_server, make_client):
    stub_server.push(Reply(content=ANSWER, delay_s=1.0))
    summ = LLMSummarizer(make_client(timeout_s=0.3, max_retries=0))
    assert summ.reference("t", SUCCESS, [FAILED]) is None and "timed out" in summ.last_error


def test_llm_summarizer_cache_hits_are_counted(stub_server, make_client):
    stub_server.push(ANSWER)
    summ = LLMSummarizer(make_client(cache=True))
    first = summ.reference("t", SUCCESS, [FAILED])
    second = summ.reference("t", SUCCESS, [FAILED])
    assert first == second and len(stub_server.requests) == 1
    assert (summ.calls, summ.cache_hits, summ.failures) == (2, 1, 0)


def test_offline_summarizer_is_the_labelled_stand_in():
    summ = OfflineSummarizer(write_tools={"cancel_reservation"})
    ref = summ.reference("ignored", SUCCESS, [FAILED])
    assert ref is not None and ref.source == OFFLINE_SOURCE and summ.name == OFFLINE_SOURCE
    assert ref.items[0].kind == "decisive" and ref.items[0].step == StepRef(0, 2)
    assert summ.reference("t", SUCCESS, [list(SUCCESS)]) is None  # no contrast
    assert (summ.calls, summ.failures, summ.failure_reasons["no_contrast"]) == (2, 1, 1)


def test_pipeline_on_real_tau3_episodes():
    """Real env episodes (scripted stand-in user) → select_siblings → steps → offline reference."""
    from algorithms.credit_reference import select_siblings, steps_from_messages, teacher_messages
    from sgcd_envs.tau3_airline import WRITE_TOOLS, Tau3AirlineEnv

    lookup = '<tool_call>{"name": "get_reservation_details", "arguments": {"reservation_id": "EHGLP3"}}</tool_call>'
    cancel = ('<tool_call>{"name": "cancel_reservation", "arguments": {"reservation_id": "EHGLP3"}}'
              "</tool_call>")
    scripts = {  # task 0: the cancellation is not allowed, so refusing is the success
        "cancels": [lookup, cancel, "It is cancelled. Have a great day!"],
        "refuses": [lookup, "I am sorry, this reservation cannot be cancelled. Have a great day!"],
    }
    env = Tau3AirlineEnv(split="train")
    rewards, episodes = [], []
    for actions in scripts.values():
        obs, _ = env.reset(seed=0, options={"task_id": "0"})
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
        assert terminated
        rewards.append(reward)
        episodes.append(steps_from_messages(obs))
    best, failed = select_siblings(rewards, num_steps=[len(e) for e in episodes])
    assert (best, failed) == (1, [0])
    success, failures = episodes[best], [episodes[i] for i in failed]
    assert [s.tool for s in success] == ["get_reservation_details", None]
    ref = OfflineSummarizer(write_tools=WRITE_TOOLS).reference("task 0", success, failures)
    assert ref is not None
    errors = ref.of_kind("error")
    assert errors[0].step == StepRef(1, 2) and errors[0].text.startswith("wrong write: cancel_reservation")
    prompt = [{"role": "system", "content": env.policy}, obs[0]]
    assert "wrong write" in teacher_messages(prompt, ref)[0]["content"]


def test_fallback_causes_are_kept_for_the_run_summary(stub_server, make_client):
    """Each fallback's cause is counted by kind and short reason; failure_summary() shows them."""
    stub_server.push(Reply(status=500), "As an AI language model I cannot help.", "Sorry, no.", ANSWER)
    summ = LLMSummarizer(make_client(max_retries=0))
    assert summ.failure_summary() == "0 fell back to w = 1"
    for _ in range(4):
        summ.reference("Cancel EHGLP3.", SUCCESS, [FAILED])
    assert summ.failure_causes == Counter({"parse: no numbered lines in the answer": 2,
                                           "llm: HTTP 500: stub error 500": 1})
    assert summ.failure_summary() == ("3 fell back to w = 1 (parse: no numbered lines in the answer ×2, "
                                      "llm: HTTP 500: stub error 500 ×1)")
    offline = OfflineSummarizer(write_tools={"cancel_reservation"})
    offline.reference("t", SUCCESS, [list(SUCCESS)])
    assert offline.failure_summary() == (
        "1 fell back to w = 1 (no_contrast: offline_contrast_reference: no contrast found ×1)")


def test_fallback_causes_stay_a_small_counter():
    summ = OfflineSummarizer()
    for i in range(MAX_FAILURE_CAUSES + 5):
        summ.failure_causes[_cause_key(summ.failure_causes, "parse", f"cause number {i}")] += 1
    assert len(summ.failure_causes) == MAX_FAILURE_CAUSES + 1 and summ.failure_causes["parse: other"] == 5
