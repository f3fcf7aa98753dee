"""SGCD's teacher context: the clean prompt with the credit reference in its system message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .reference import CreditReference, render_credit_reference

#: Header line of the reference inside the teacher's system message.
REFERENCE_HEADER = "Credit reference (training-only notes on earlier attempts at this task):"


def teacher_messages(
    prompt_messages: Sequence[Mapping[str, Any]], reference: CreditReference
) -> list[dict[str, Any]]:
    """The teacher's context: the clean prompt with the credit reference in its system message.

    The rendered reference (under :data:`REFERENCE_HEADER`) is appended, after a blank line, to
    the FIRST system message; if there is none, a system message holding only the reference is
    put first. Appending to the one system message (rather than adding a second one) keeps chat
    templates that accept a system message only at position 0 (e.g. Qwen's) working. Everything
    after the system message is unchanged, so the teacher is scored on the student's own tokens.
    Returns new dicts; ``prompt_messages`` (the student's prompt) is not modified.
    (SGCD: teacher = policy with the reference in context, papers.md §1.4; placement ours.)
    """
    block = f"{REFERENCE_HEADER}\n{render_credit_reference(reference)}"
    out = [dict(m) for m in prompt_messages]
    for msg in out:
        if msg.get("role") == "system":
            content = msg.get("content") or ""
            if not isinstance(content, str):
                raise ValueError("teacher_messages: the system message content must be a string.")
            msg["content"] = f"{content.rstrip()}\n\n{block}" if content.strip() else block
            return out
    return [{"role": "system", "content": block}, *out]
