"""The teacher prompts both trainers build (algorithms.teacher_context): text only."""

from __future__ import annotations

import pytest

from algorithms.credit_reference import CreditItem, CreditReference, StepRef, steps_from_messages
from algorithms.credit_reference.reference import KINDS
from algorithms.credit_reference.teacher import REFERENCE_HEADER
from algorithms.teacher_context import (Attempt, conversation_text, demonstration_indices, reprompt_messages,
                                        sdpo_prompts, sgcd_prompts, task_text)

KIND = KINDS[0]
SYSTEM = {"role": "system", "content": "You are a shop agent. Policy: ..."}
USER = {"role": "user", "content": "Hi, please cancel my order o93."}
SOLVED = (
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "cancel_order", "arguments": '{"order_id": "o93"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "name": "cancel_order", "content": '{"status": "cancelled"}'},
    {"role": "assistant", "content": "Done: order o93 is cancelled. ###STOP###"},
)
FAILED = ({"role": "assistant", "content": "I cannot help with that. ###STOP###"},)


def attempt(group, reward, conversation=FAILED, feedback=None) -> Attempt:
    return Attempt(group, reward, (SYSTEM, USER), tuple(conversation),
                   tuple(steps_from_messages([USER, *conversation])), feedback)


class RecordingSummarizer:
    """TEST STAND-IN summarizer: records what it was asked and answers with one step."""

    def __init__(self, answer=True):
        self.calls, self.answer = [], answer

    def reference(self, task, best, failed):
        self.calls.append((task, list(best), [list(f) for f in failed]))
        item = CreditItem(1, KIND, StepRef(0, 1), "cancelling the order is the step that solves it")
        return CreditReference((item,), "test stand-in") if self.answer else None


def test_demonstrations_are_the_first_other_success_of_the_group():
    rewards = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.4]
    groups = ["a", "a", "a", "b", "b", "c", "d"]
    assert demonstration_indices(rewards, groups) == [2, 0, 0, -1, -1, -1, -1]
    assert demonstration_indices(rewards, groups, exclude_self=False) == [0, 0, 0, -1, -1, 5, -1]
    assert demonstration_indices(rewards, groups, success_threshold=0.3)[6] == -1
    with pytest.raises(ValueError, match="groups"):
        demonstration_indices([1.0], ["a", "b"])


def test_reprompt_rewrites_the_last_user_turn():
    prompt = [SYSTEM, {"role": "user", "content": "Book a flight."}]
    out = reprompt_messages(prompt, solution="<think>secret plan</think>Called book_reservation.", feedback="ignored")
    assert prompt[1]["content"] == "Book a flight." and out[0] == SYSTEM  # input unchanged, system kept
    text = out[-1]["content"]
    assert text.startswith("Book a flight.") and "Called book_reservation." in text
    assert "secret plan" not in text and "ignored" not in text and "Feedback" not in text
    assert text.rstrip().endswith("Now solve the original task above correctly.")
    fb = reprompt_messages(prompt, feedback="Tool error: unknown flight.")
    assert "Feedback on your earlier" in fb[-1]["content"] and "unknown flight" in fb[-1]["content"]
    assert reprompt_messages(prompt) == prompt
    long = reprompt_messages(prompt, solution="x" * 1000, max_chars=100)
    assert len(long[-1]["content"]) < len("Book a flight.") + 100 + 60


def test_conversation_text_shows_calls_as_the_agent_writes_them():
    text = conversation_text(SOLVED)
    assert text.split("\n\n") == [
        'assistant: <tool_call>{"name": "cancel_order", "arguments": {"order_id": "o93"}}</tool_call>',
        'tool (cancel_order): {"status": "cancelled"}',
        "assistant: Done: order o93 is cancelled. ###STOP###"]
    assert conversation_text(SOLVED, max_chars=20) == text[:20]


def test_sgcd_prompts_put_the_groups_reference_in_every_siblings_system_message():
    short = attempt("g", 1.0, SOLVED[-1:])  # a success in fewer steps wins the reward tie
    batch = [attempt("g", 0.0), attempt("g", 1.0, SOLVED), short, attempt("h", 1.0, SOLVED), attempt("h", 1.0)]
    summarizer = RecordingSummarizer()
    prompts, metrics = sgcd_prompts(batch, summarizer)
    [(task, best, failed)] = summarizer.calls  # group h has no failure: no contrast, not asked
    assert task == task_text((SYSTEM, USER)) == USER["content"]  # the task, not the system policy
    assert best == list(short.steps) and failed == [list(batch[0].steps)]
    for p in prompts[:3]:
        assert p[1] == USER and p[0]["content"].startswith(SYSTEM["content"]) and REFERENCE_HEADER in p[0]["content"]
    assert prompts[3:] == [None, None]
    assert metrics == {"sgcd/groups": 2.0, "sgcd/groups_with_contrast": 1.0, "sgcd/groups_with_reference": 1.0,
                       "sgcd/summarizer_failures": 0.0}
    prompts, metrics = sgcd_prompts(batch, RecordingSummarizer(answer=False))
    assert prompts == [None] * 5 and metrics["sgcd/summarizer_failures"] == 1.0


def test_sdpo_prompts_show_a_successful_siblings_conversation_or_the_envs_own_feedback():
    batch = [attempt("g", 0.0), attempt("g", 1.0, SOLVED), attempt("g", 1.0, SOLVED),
             attempt("h", 0.0, feedback="2 of 3 tests failed"), attempt("h", 0.0), attempt("i", 1.0, SOLVED)]
    prompts = sdpo_prompts(batch)
    assert prompts[0][0] == SYSTEM and conversation_text(SOLVED) in prompts[0][1]["content"]
    assert prompts[0][1]["content"].startswith(USER["content"])
    assert prompts[1] is not None and prompts[2] is not None  # each success learns from the other
    assert "2 of 3 tests failed" in prompts[3][1]["content"]  # feedback only where the env gave some
    assert prompts[4] is None and prompts[5] is None  # nothing to show; a lone success is not its own demo
    assert sdpo_prompts(batch, include_feedback=False)[3] is None
