"""Teacher contexts built on verl's driver from a batch of finished episodes (pure, CPU).

SGCD (SPEC §3.5a–c): per uid group, the best success and the failed siblings → a credit reference
from the summarizer (``adapters.llm.OfflineSummarizer``, the offline stand-in, or
``LLMSummarizer`` over the same OpenAI-compatible client as the local trainer) →
``algorithms.credit_reference.teacher_messages`` for every sibling of the group.
SDPO (SPEC §3.6): ``algorithms.sdpo.select_demonstrations`` picks a successful sibling per
sample; ``algorithms.sdpo.reprompt_messages`` appends it (or the env feedback) to the prompt.

The trainers tokenise the returned messages with verl's Continuous-Token builder (the same path
the agent loop used for the student prompt) and score the student's own response tokens on them
with ``compute_log_prob``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from algorithms import credit_reference as cr
from algorithms import sdpo


@dataclass(frozen=True)
class Episode:
    """What the driver knows about one trajectory (from the agent loop's ``extra_fields``)."""

    uid: str
    reward: float
    prompt_messages: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    feedback: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _task_prompt(prompt_messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n\n".join(str(m.get("content") or "") for m in prompt_messages if m.get("role") in ("system", "user"))


def _groups(episodes: Sequence[Episode]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, ep in enumerate(episodes):
        out.setdefault(ep.uid, []).append(i)
    return out


def sgcd_teacher_messages(
    episodes: Sequence[Episode], summarizer: Any, *, success_threshold: float = 1.0
) -> tuple[list[list[dict[str, Any]] | None], dict[str, float]]:
    """Teacher messages per episode (None: no reference for its group → w = 1 there).

    A group gets a reference only when it has a success and a failure (the contrast) and the
    summarizer returns one; summarizer failures are counted, never raised (SPEC §3.5b).
    """
    out: list[list[dict[str, Any]] | None] = [None] * len(episodes)
    asked = got = 0
    for rows in _groups(episodes).values():
        steps = [cr.steps_from_messages(episodes[i].messages) for i in rows]
        best, failed = cr.select_siblings(
            [episodes[i].reward for i in rows], success_threshold=success_threshold, num_steps=[len(s) for s in steps]
        )
        if best is None or not failed:
            continue
        asked += 1
        reference = summarizer.reference(
            _task_prompt(episodes[rows[best]].prompt_messages), steps[best], [steps[j] for j in failed]
        )
        if reference is None:
            continue
        got += 1
        for i in rows:
            out[i] = cr.teacher_messages(episodes[i].prompt_messages, reference)
    metrics = {
        "sgcd/groups": float(len(_groups(episodes))),
        "sgcd/groups_with_contrast": float(asked),
        "sgcd/groups_with_reference": float(got),
        "sgcd/summarizer_failures": float(asked - got),
    }
    return out, metrics


def sdpo_teacher_messages(
    episodes: Sequence[Episode], *, success_threshold: float = 1.0, use_feedback: bool = True
) -> tuple[list[list[dict[str, Any]] | None], torch.Tensor]:
    """Reprompted teacher messages per episode and the SDPO sample mask (B,).

    Sample i is distilled (mask 1) when a *different* sibling of its group succeeded (its
    rendered steps are the demonstration) or, failing that, when it carries env feedback and
    ``use_feedback``; otherwise its entry is None and its mask 0.
    """
    rewards = torch.tensor([float(ep.reward) for ep in episodes])
    demo = sdpo.select_demonstrations(rewards, [ep.uid for ep in episodes], success_threshold=success_threshold)
    out: list[list[dict[str, Any]] | None] = []
    mask = torch.zeros(len(episodes))
    for i, ep in enumerate(episodes):
        j = int(demo[i])
        solution = cr.render_steps(cr.steps_from_messages(episodes[j].messages)) if j >= 0 else None
        feedback = ep.feedback if (use_feedback and solution is None) else None
        if solution is None and not feedback:
            out.append(None)
            continue
        out.append(sdpo.reprompt_messages(ep.prompt_messages, solution=solution, feedback=feedback))
        mask[i] = 1.0
    return out, mask
