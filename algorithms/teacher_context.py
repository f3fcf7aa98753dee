"""The teacher's prompt for SGCD and SDPO, built once for both trainers (text only, no torch).

A sibling rollout is an :class:`Attempt`: its reward, the student's prompt (the system message
and the task's first user turn), the conversation after it, its tool-call steps and the feedback
its env gave, if any. Both trainers turn their episodes into attempts, call these functions, and
score the student's own response tokens after the returned prompt.

* SGCD (:func:`sgcd_prompts`): per group, the best success and the failures
  (:func:`~algorithms.credit_reference.select_siblings`, reward ties to fewer steps) and the task
  (the prompt's user turn) go to the summarizer; its credit reference is appended to every
  sibling's system message (:func:`~algorithms.credit_reference.teacher_messages`).
* SDPO (:func:`sdpo_prompts`): per attempt, the first successful sibling other than itself; its
  conversation as text (:func:`conversation_text`) is the solution, else — only when the env gave
  feedback and the config asks for it — that feedback; the prompt's user turn becomes the original
  task, the solution (or feedback) section and the instruction to solve the task
  (:func:`~algorithms.sdpo.reprompt_messages`). This is lasgroup/SDPO's reprompt (the last user
  turn of the prompt rewritten; sibling chosen as the first success that is not the sample
  itself; feedback only without a solution), with the multi-turn conversation, tool results
  included, as the "response" it shows; the limit is in characters (``max_chars``), not tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .credit_reference import CreditReference, Step, select_siblings, teacher_messages

Message = Mapping[str, Any]


class Summarizer(Protocol):
    def reference(self, task: str, best: Sequence[Step], failed: Sequence[Sequence[Step]]) -> CreditReference | None:
        ...


@dataclass(frozen=True)
class Attempt:
    """One sibling rollout as the teacher prompts see it."""

    group: Hashable
    """Siblings of one task share it (verl's uid, the local group index)."""
    reward: float
    prompt: tuple[Message, ...]
    """The student's prompt: the system message, then the task's first user turn."""
    conversation: tuple[Message, ...] = ()
    """The env's messages after the prompt: assistant turns (with ``tool_calls``), tool results,
    user replies."""
    steps: tuple[Step, ...] = ()
    """Its steps as the summarizer reads them (``steps_from_messages`` of the env's reading)."""
    feedback: str | None = field(default=None)
    """What the env itself reported on a failure (e.g. AppWorld's failed tests); None = nothing."""


def task_text(prompt: Sequence[Message]) -> str:
    """The task as the summarizer reads it: the prompt's user turn(s), without the system policy."""
    return "\n\n".join(str(m.get("content") or "") for m in prompt if m.get("role") == "user")


def _call_text(call: Mapping[str, Any]) -> str:
    fn = call.get("function") or call
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            pass
    return "<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False) + "</tool_call>"


def conversation_text(messages: Sequence[Message], *, max_chars: int | None = None) -> str:
    """A conversation as the text of a demonstration, one turn per paragraph:
    ``assistant: TEXT<tool_call>{"name": …, "arguments": …}</tool_call>`` (calls in the Hermes form
    the agent writes), ``tool (NAME): RESULT``, ``user: TEXT``; cut to ``max_chars``."""
    parts = []
    for m in messages:
        role, content = m.get("role"), str(m.get("content") or "")
        if role == "assistant":
            parts.append("assistant: " + content + "".join(_call_text(c) for c in m.get("tool_calls") or ()))
        elif role == "tool":
            parts.append(f"tool ({m.get('name') or 'result'}): {content}")
        else:
            parts.append(f"{role}: {content}")
    text = "\n\n".join(parts)
    return text if max_chars is None else text[:max_chars]


def demonstration_indices(rewards: Sequence[float], groups: Sequence[Hashable], *, success_threshold: float = 1.0,
                          exclude_self: bool = True) -> list[int]:
    """Per attempt, ``d_i = min{ j : g_j = g_i, R_j ≥ threshold, j ≠ i if exclude_self }``, or −1.
    (SDPO reference code: the first successful completion of the same prompt.)"""
    if len(rewards) != len(groups):
        raise ValueError(f"rewards has {len(rewards)} entries but groups has {len(groups)}")
    first: dict[Hashable, list[int]] = {}
    for j, (r, g) in enumerate(zip(rewards, groups)):
        if float(r) >= success_threshold:
            first.setdefault(g, []).append(j)
    out = []
    for i, g in enumerate(groups):
        ok = [j for j in first.get(g, ()) if not (exclude_self and j == i)]
        out.append(ok[0] if ok else -1)
    return out


_THINK = re.compile(r"<think>.*?</think>\s*", flags=re.DOTALL | re.IGNORECASE)


def strip_thinking(text: str) -> str:
    """Remove ``<think>…</think>`` blocks (and an unclosed trailing ``<think>…``) from a demo."""
    text = _THINK.sub("", text)
    cut = text.lower().find("<think>")
    return (text[:cut] if cut >= 0 else text).strip()


def reprompt_messages(
    prompt_messages: Sequence[dict],
    *,
    solution: str | None = None,
    feedback: str | None = None,
    max_chars: int = 40_000,
) -> list[dict]:
    """Teacher context for SDPO: the original messages with a privileged section appended.

    Appended to the last user message (a new user message if the last one is not a user turn):
    a "successful attempt" section with ``solution`` (thinking blocks stripped), else — only when
    there is no solution — a "feedback on your earlier attempt" section with ``feedback``, then a
    closing instruction to solve the original task. The section is right-truncated to
    ``max_chars``. Structure as the SDPO reference template (prompt + solution + feedback +
    instruction; feedback only without a solution; ``<think>`` removed); wording ours. Returns a
    new list (inputs are not modified); with neither solution nor feedback, a copy of the prompt.
    """
    if not isinstance(prompt_messages, (list, tuple)) or not all(isinstance(m, dict) for m in prompt_messages):
        raise ValueError("prompt_messages must be a list of chat message dicts")
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars!r}")
    msgs = [dict(m) for m in prompt_messages]
    sol = strip_thinking(solution) if solution and solution.strip() else None
    fb = feedback.strip() if (feedback and feedback.strip() and sol is None) else None
    if sol is None and fb is None:
        return msgs
    if sol is not None:
        section = "\n\nA successful attempt at this task, for reference:\n\n" + sol
    else:
        section = "\n\nFeedback on your earlier, unsuccessful attempt:\n\n" + fb
    section = section[:max_chars]
    section += "\n\nNow solve the original task above correctly."
    if msgs and msgs[-1].get("role") == "user" and isinstance(msgs[-1].get("content"), str):
        msgs[-1]["content"] = msgs[-1]["content"] + section
    else:
        msgs.append({"role": "user", "content": section.lstrip()})
    return msgs


def _groups(attempts: Sequence[Attempt]) -> dict[Hashable, list[int]]:
    out: dict[Hashable, list[int]] = {}
    for i, a in enumerate(attempts):
        out.setdefault(a.group, []).append(i)
    return out


def sgcd_prompts(attempts: Sequence[Attempt], summarizer: Summarizer | Mapping[Hashable, Summarizer], *,
                 success_threshold: float = 1.0) -> tuple[list[list[dict[str, Any]] | None], dict[str, float]]:
    """Per attempt its teacher prompt (None: its group has no reference, so w = 1 there), and
    counts: groups, those with a contrast, those that got a reference, summarizer failures.
    ``summarizer`` may be a mapping group → summarizer (e.g. one per env)."""
    out: list[list[dict[str, Any]] | None] = [None] * len(attempts)
    groups = _groups(attempts)
    asked = got = 0
    for key, rows in groups.items():
        steps = [attempts[i].steps for i in rows]
        best, failed = select_siblings([attempts[i].reward for i in rows], success_threshold=success_threshold,
                                       num_steps=[len(s) for s in steps])
        if best is None or not failed:
            continue
        asked += 1
        who = summarizer[key] if isinstance(summarizer, Mapping) else summarizer
        reference = who.reference(task_text(attempts[rows[best]].prompt), list(steps[best]),
                                  [list(steps[j]) for j in failed])
        if reference is None:
            continue
        got += 1
        for i in rows:
            out[i] = teacher_messages(attempts[i].prompt, reference)
    return out, {"sgcd/groups": float(len(groups)), "sgcd/groups_with_contrast": float(asked),
                 "sgcd/groups_with_reference": float(got), "sgcd/summarizer_failures": float(asked - got)}


def sdpo_prompts(attempts: Sequence[Attempt], *, success_threshold: float = 1.0,
                 dont_reprompt_on_self_success: bool = True, include_feedback: bool = True,
                 max_chars: int = 40_000) -> list[list[dict[str, Any]] | None]:
    """Per attempt its reprompted teacher prompt, or None (not distilled: no successful sibling
    and no feedback to use)."""
    demos = demonstration_indices([a.reward for a in attempts], [a.group for a in attempts],
                                  success_threshold=success_threshold, exclude_self=dont_reprompt_on_self_success)
    out: list[list[dict[str, Any]] | None] = []
    for a, d in zip(attempts, demos):
        solution = conversation_text(attempts[d].conversation) if d >= 0 else None
        feedback = a.feedback if (solution is None and include_feedback and a.reward < success_threshold) else None
        if solution is None and not feedback:
            out.append(None)
            continue
        out.append(reprompt_messages(list(a.prompt), solution=solution, feedback=feedback, max_chars=max_chars))
    return out


__all__ = ["Attempt", "conversation_text", "demonstration_indices", "reprompt_messages", "sdpo_prompts", "sgcd_prompts",
           "strip_thinking", "task_text"]
