"""SGCD credit-reference text pipeline (SPEC §3.5a–c): sibling evidence → request → reference → teacher.

Pure Python (stdlib only): no torch, no LLM client. The OpenAI-compatible client that sends the
request lives in ``adapters/llm``; this module builds the request, parses and validates the
answer, offers an offline stand-in summarizer, and builds the teacher's context.

Pipeline for one kept group of G siblings with rewards R_1..R_G:

1. ``select_siblings``: the best successful sibling (R_i ≥ threshold) and the failed ones.
2. ``render_steps``: each sibling as a compact numbered step list (assistant text, tool name and
   arguments, short result). Steps of the success are referred to as ``S<k>``, steps of the j-th
   failed sibling as ``F<j>.<k>`` (1-based).
3. ``credit_reference_request``: OpenAI chat messages asking an external LLM for a numbered,
   step-wise credit reference in a strict line format (our own wording).
4. ``parse_credit_reference``: the answer → ``CreditReference`` (numbered items of kind
   decisive / error / correction with a step reference), or ``CreditReferenceError``.
   ``offline_contrast_reference`` derives the same structure without an LLM (the offline
   stand-in summarizer, the embedded default).
5. ``teacher_messages``: the clean prompt with the rendered reference appended to its system
   message; the student prompt is never changed.

Sources: SGCD (arXiv 2606.12634) states only that an external LLM summarises the contrast
between successful and failed siblings into a training-only, step-wise credit reference that the
student never sees (abstract, see ``research/papers.md`` §1.1). The prompt wording, the line
format, the step-reference scheme, the offline alignment heuristic and the place the reference
goes in the teacher's context are our choices (papers.md §1.4, marked [INF] there).
"""

from .offline import OFFLINE_SOURCE, offline_contrast_reference
from .reference import (
    KINDS,
    CreditItem,
    CreditReference,
    CreditReferenceError,
    Kind,
    StepRef,
    parse_credit_reference,
    render_credit_reference,
)
from .request import credit_reference_request, render_steps
from .steps import Step, select_siblings, steps_from_messages
from .teacher import REFERENCE_HEADER, teacher_messages

__all__ = [
    "KINDS",
    "OFFLINE_SOURCE",
    "REFERENCE_HEADER",
    "CreditItem",
    "CreditReference",
    "CreditReferenceError",
    "Kind",
    "Step",
    "StepRef",
    "credit_reference_request",
    "offline_contrast_reference",
    "parse_credit_reference",
    "render_credit_reference",
    "render_steps",
    "select_siblings",
    "steps_from_messages",
    "teacher_messages",
]
