"""Tests of the SGCD credit-reference text pipeline (algorithms/credit_reference.py)."""

from __future__ import annotations

import copy
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithms.credit_reference import (
    OFFLINE_SOURCE,
    REFERENCE_HEADER,
    CreditItem,
    CreditReference,
    CreditReferenceError,
    Step,
    StepRef,
    credit_reference_request,
    offline_contrast_reference,
    parse_credit_reference,
    render_credit_reference,
    render_steps,
    select_siblings,
    steps_from_messages,
    teacher_messages,
)

WRITES = {"cancel_reservation", "book_reservation", "update_reservation_flights"}


def call(i: int, tool: str, result: str = "ok", error: bool = False, text: str = "", **args) -> Step:
    return Step(index=i, text=text, tool=tool, arguments=args, result=result, is_error=error)


def say(i: int, text: str, reply: str = "") -> Step:
    return Step(index=i, text=text, result=reply)


# A small airline-like group: the success cancels EHGLP3; F1 never writes; F2 cancels the wrong
# reservation; F3 hits a tool error and then gives up.
SUCCESS = [
    call(1, "get_user_details", '{"name": "Emma Kim"}', user_id="emma_kim_9957"),
    call(2, "get_reservation_details", '{"status": "ok"}', reservation_id="EHGLP3"),
    call(3, "cancel_reservation", '{"status": "cancelled"}', reservation_id="EHGLP3"),
    say(4, "Your reservation EHGLP3 is cancelled.", "user: thanks"),
]
F_NO_WRITE = [
    call(1, "get_user_details", '{"name": "Emma Kim"}', user_id="emma_kim_9957"),
    call(2, "get_reservation_details", '{"status": "ok"}', reservation_id="ehglp3 "),
    say(3, "I cannot cancel this reservation.", "user: ###STOP###"),
]
F_WRONG_WRITE = [
    call(1, "get_user_details", '{"name": "Emma Kim"}', user_id="emma_kim_9957"),
    call(2, "cancel_reservation", '{"status": "cancelled"}', reservation_id="XYZ123"),
]
F_ERROR = [
    call(1, "get_user_details", "Error: user not found", error=True, user_id="emma_kim"),
    say(2, "Sorry, I could not find you."),
]


# ---- select_siblings -------------------------------------------------------------------------


def test_select_siblings_picks_best_success_and_failures():
    assert select_siblings([0.0, 1.0, 0.0, 1.0]) == (1, [0, 2])
    assert select_siblings([0.0, 0.0]) == (None, [0, 1])
    assert select_siblings([1.0, 1.0]) == (0, [])


def test_select_siblings_ties_fewest_steps_then_index():
    assert select_siblings([1.0, 1.0, 0.0], num_steps=[9, 4, 2]) == (1, [2])
    assert select_siblings([1.0, 1.0, 0.0], num_steps=[4, 4, 2]) == (0, [2])
    # the higher reward wins over fewer steps
    assert select_siblings([0.7, 0.9, 0.1], success_threshold=0.5, num_steps=[1, 50, 1]) == (1, [2])


@pytest.mark.parametrize(
    "rewards, kwargs, match",
    [
        ([1.0, float("nan")], {}, r"rewards\[1\] must be finite"),
        ([1.0, 0.0], {"num_steps": [1]}, "num_steps has 1 entries"),
        ([1.0, 0.0], {"num_steps": [1, -2]}, "num_steps must be >= 0"),
    ],
)
def test_select_siblings_rejects_bad_input(rewards, kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_siblings(rewards, **kwargs)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.integers(0, 5)),
             min_size=1, max_size=8)
)
def test_select_siblings_properties(pairs):
    rewards = [r for r, _ in pairs]
    steps = [n for _, n in pairs]
    best, failed = select_siblings(rewards, success_threshold=0.5, num_steps=steps)
    assert failed == [i for i, r in enumerate(rewards) if r < 0.5]
    succ = [i for i, r in enumerate(rewards) if r >= 0.5]
    if not succ:
        assert best is None
    else:
        assert rewards[best] == max(rewards[i] for i in succ)
        tied = [i for i in succ if rewards[i] == rewards[best]]
        assert steps[best] == min(steps[i] for i in tied)
        assert best == min(i for i in tied if steps[i] == steps[best])
    assert select_siblings(rewards, success_threshold=0.5, num_steps=steps) == (best, failed)


# ---- steps and rendering ---------------------------------------------------------------------


def test_step_validation():
    with pytest.raises(ValueError, match="index must be an int >= 1"):
        Step(index=0)
    with pytest.raises(ValueError, match="arguments must be None"):
        Step(index=1, arguments={"a": 1})


def test_render_steps_labels_results_errors_and_truncation():
    out = render_steps(F_ERROR, prefix="F3.")
    assert out.splitlines()[0] == 'F3.1. call get_user_details {"user_id":"emma_kim"}'
    assert "-> ERROR: Error: user not found" in out
    assert 'F3.2. message: "Sorry, I could not find you."' in out
    long = [call(1, "calculate", "x" * 500, expression="1+1")]
    line = render_steps(long, max_result_chars=50).splitlines()[1]
    assert len(line.strip()) == len("-> ") + 50 and line.endswith("…")
    assert render_steps([]) == "(no steps)"
    with pytest.raises(ValueError, match="limits must be >= 1"):
        render_steps(SUCCESS, max_result_chars=0)


def test_steps_from_messages_structured_calls():
    messages = [
        {"role": "user", "content": "Cancel EHGLP3 please."},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_reservation_details", "arguments": '{"reservation_id": "EHGLP3"}'}},
            {"id": "c2", "type": "function",
             "function": {"name": "cancel_reservation", "arguments": {"reservation_id": "EHGLP3"}}},
        ]},
        {"role": "tool", "tool_call_id": "c2", "content": "Error: cannot cancel"},
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "confirmed"}'},
        {"role": "assistant", "content": "I could not cancel it."},
        {"role": "user", "content": "###STOP###"},
    ]
    steps = steps_from_messages(messages)
    assert [s.index for s in steps] == [1, 2, 3]
    assert steps[0] == Step(1, "Let me check.", "get_reservation_details",
                            {"reservation_id": "EHGLP3"}, '{"status": "confirmed"}', False)
    assert steps[1].tool == "cancel_reservation" and steps[1].is_error and steps[1].text == ""
    assert steps[2] == Step(3, "I could not cancel it.", None, None, "user: ###STOP###", False)
    with pytest.raises(ValueError, match="no preceding tool call"):
        steps_from_messages([{"role": "tool", "tool_call_id": "x", "content": "?"}])


# ---- the request -----------------------------------------------------------------------------


def test_credit_reference_request_shape_and_content():
    msgs = credit_reference_request("Cancel EHGLP3.", SUCCESS, [F_NO_WRITE, F_WRONG_WRITE, F_ERROR],
                                    max_failures=2)
    assert [m["role"] for m in msgs] == ["system", "user"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert "[DECISIVE] S<k>" in system and "[ERROR] F<j>.<k>" in system
    assert "[CORRECTION]" in system and "training" in system and "complete solution" in system
    assert "S3. call cancel_reservation" in user and "F2.2. call cancel_reservation" in user
    assert "FAILED ATTEMPT 2" in user and "FAILED ATTEMPT 3" not in user  # capped
    assert "Cancel EHGLP3." in user


@pytest.mark.parametrize(
    "success, failures, match",
    [([], [F_ERROR], "has no steps"), (SUCCESS, [], "at least one failed")],
)
def test_credit_reference_request_rejects_missing_evidence(success, failures, match):
    with pytest.raises(ValueError, match=match):
        credit_reference_request("t", success, failures)


# ---- parsing ---------------------------------------------------------------------------------

CLEAN = """1. [DECISIVE] S3: cancel_reservation on EHGLP3 achieved the goal.
2. [ERROR] F2.2: cancelled XYZ123, the wrong reservation.
3. [CORRECTION] F2.2: call cancel_reservation with reservation_id EHGLP3."""


def test_parse_clean_answer():
    ref = parse_credit_reference(CLEAN, source="llm:x", n_success_steps=4, n_failure_steps=[3, 2])
    assert ref.source == "llm:x" and ref.dropped == 0
    assert ref.items[0] == CreditItem(1, "decisive", StepRef(0, 3),
                                      "cancel_reservation on EHGLP3 achieved the goal.")
    assert [i.kind for i in ref.items] == ["decisive", "error", "correction"]
    assert ref.items[1].step == StepRef(2, 2) and str(ref.items[1].step) == "F2.2"
    assert len(ref.of_kind("error")) == 1


def test_parse_tolerates_markdown_fences_bullets_and_synonyms():
    text = """Sure, here is the reference:
```text
- **1.** **[Decisive]** S3 - the cancel call
2) __MISTAKE__ F1.2: looked up the reservation
   but then never cancelled it
* 3. Correction at step F1.3: cancel EHGLP3 instead of refusing
4. Key S1 — looked the user up
```
"""
    ref = parse_credit_reference(text, n_success_steps=4, n_failure_steps=[3])
    assert [(i.kind, str(i.step)) for i in ref.items] == [
        ("decisive", "S3"), ("error", "F1.2"), ("correction", "F1.3"), ("decisive", "S1")]
    assert ref.items[0].text == "the cancel call"
    assert ref.items[1].text == "looked up the reservation but then never cancelled it"
    assert ref.items[3].text == "looked the user up"


def test_parse_drops_unlabelled_and_out_of_range_items():
    text = CLEAN + "\n4. Summary: the agent should be careful.\n5. [ERROR] F9.1: no such sibling\n6. [ERROR] S40: no such step"
    ref = parse_credit_reference(text, n_success_steps=4, n_failure_steps=[3, 2])
    assert len(ref.items) == 3 and ref.dropped == 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty answer"),
        ("   \n ", "empty answer"),
        ("I think the agent did fine overall.", "no numbered lines"),
        ("- [DECISIVE] S3: bullets without numbers", "no numbered lines"),
        ("1. The agent looked things up.\n2. Then it stopped.", "none of the 2 numbered lines"),
        ("1. [ERROR] F1.1:", "none of the 1 numbered lines"),
        ('{"choices": null}', "no numbered lines"),
    ],
)
def test_parse_rejects_garbage(text, match):
    with pytest.raises(CreditReferenceError, match=match):
        parse_credit_reference(text)


def test_parse_caps_items():
    text = "\n".join(f"{n}. [DECISIVE] S1: reason {n}" for n in range(1, 31))
    ref = parse_credit_reference(text, max_items=5)
    assert [i.number for i in ref.items] == [1, 2, 3, 4, 5]


_refs = st.builds(
    lambda sib, step: StepRef(sib, step), st.integers(0, 4), st.integers(1, 40)
) | st.none()
_texts = st.text(
    alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters=" ,;'()=_"),
    min_size=1, max_size=60,
).map(lambda s: " ".join(s.split())).filter(bool)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["decisive", "error", "correction"]), _refs, _texts),
                min_size=1, max_size=8))
def test_render_then_parse_round_trips(raw):
    ref = CreditReference(
        items=tuple(CreditItem(n, k, r, t) for n, (k, r, t) in enumerate(raw, start=1)),
        source="x")
    assert parse_credit_reference(render_credit_reference(ref), source="x").items == ref.items


def test_credit_reference_needs_items_and_valid_kinds():
    with pytest.raises(CreditReferenceError, match="at least one item"):
        CreditReference(items=())
    with pytest.raises(ValueError, match="kind must be one of decisive, error, correction"):
        CreditItem(1, "good", None, "x")  # type: ignore[arg-type]


# ---- offline stand-in summarizer -------------------------------------------------------------


def test_offline_marks_missing_write_as_decisive_and_corrects_first_divergence():
    ref = offline_contrast_reference(SUCCESS, [F_NO_WRITE], write_tools=WRITES)
    assert ref.source == OFFLINE_SOURCE
    got = [(i.kind, str(i.step)) for i in ref.items]
    # "ehglp3 " matches "EHGLP3" after normalisation, so only the cancel is missing
    assert got == [("decisive", "S3"), ("correction", "F1.3")]
    assert "write cancel_reservation" in ref.items[0].text
    assert "1 of 1" in ref.items[0].text
    assert "cancel_reservation" in ref.items[1].text and "never made this call" in ref.items[1].text


def test_offline_flags_wrong_write_and_tool_errors():
    ref = offline_contrast_reference(SUCCESS, [F_NO_WRITE, F_WRONG_WRITE, F_ERROR],
                                     write_tools=WRITES, max_items=20)
    by_kind = {k: [(str(i.step), i.text) for i in ref.of_kind(k)]
               for k in ("decisive", "error", "correction")}
    # the cancel of EHGLP3 is missing from all three failures: first and counted 3 of 3
    assert by_kind["decisive"][0][0] == "S3" and "3 of 3" in by_kind["decisive"][0][1]
    errors = dict(by_kind["error"])
    assert errors["F2.2"].startswith("wrong write: cancel_reservation")
    assert "returned an error: Error: user not found" in errors["F3.1"]
    assert list(errors)[0] == "F2.2"  # writes are listed first
    assert {ref for ref, _ in by_kind["correction"]} == {"F1.3", "F2.2", "F3.1"}
    assert ref.items == offline_contrast_reference(
        SUCCESS, [F_NO_WRITE, F_WRONG_WRITE, F_ERROR], write_tools=WRITES, max_items=20).items
    # The output parses back (the teacher can be given an offline or an LLM reference alike).
    again = parse_credit_reference(render_credit_reference(ref), n_success_steps=len(SUCCESS),
                                   n_failure_steps=[3, 2, 2], max_items=20)
    assert again.items == ref.items


def test_offline_max_items_keeps_every_kind():
    ref = offline_contrast_reference(SUCCESS, [F_NO_WRITE, F_WRONG_WRITE, F_ERROR],
                                     write_tools=WRITES, max_items=3)
    assert [i.kind for i in ref.items] == ["decisive", "error", "correction"]


def test_offline_key_args_restrict_the_signature():
    succ = [call(1, "search_direct_flight", "[]", origin="JFK", destination="LAX", date="2024-05-01")]
    fail = [call(1, "search_direct_flight", "[]", origin="JFK", destination="LAX", date="2024-05-02")]
    assert offline_contrast_reference(succ, [fail]).of_kind("decisive")
    with pytest.raises(CreditReferenceError, match="no contrast"):
        offline_contrast_reference(succ, [fail],
                                   key_args={"search_direct_flight": ("origin", "destination")})


def test_offline_without_contrast_raises():
    with pytest.raises(CreditReferenceError, match="no contrast"):
        offline_contrast_reference(SUCCESS, [list(SUCCESS)])
    with pytest.raises(CreditReferenceError, match="at least one failed"):
        offline_contrast_reference(SUCCESS, [])


# ---- teacher context -------------------------------------------------------------------------


def test_teacher_messages_appends_to_system_and_leaves_student_prompt_alone():
    prompt = [{"role": "system", "content": "You are an airline agent."},
              {"role": "user", "content": "Cancel EHGLP3."}]
    before = copy.deepcopy(prompt)
    ref = parse_credit_reference(CLEAN)
    teacher = teacher_messages(prompt, ref)
    assert prompt == before  # the student's prompt is untouched
    assert len(teacher) == 2 and teacher[1] == prompt[1]
    assert teacher[0]["content"] == (
        "You are an airline agent.\n\n" + REFERENCE_HEADER + "\n" + render_credit_reference(ref))


def test_teacher_messages_without_system_prepends_one():
    prompt = [{"role": "user", "content": "hi"}]
    teacher = teacher_messages(prompt, parse_credit_reference(CLEAN))
    assert teacher[0]["role"] == "system" and teacher[0]["content"].startswith(REFERENCE_HEADER)
    assert teacher[1:] == prompt


def test_module_imports_only_stdlib():
    """Every module of the package imports the standard library and its siblings only (the
    ``algorithms`` package may import torch)."""
    import ast
    from pathlib import Path

    import algorithms.credit_reference as pkg

    modules = sorted(Path(pkg.__file__).parent.glob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        assert names <= set(sys.stdlib_module_names), (path.name, names - set(sys.stdlib_module_names))
