"""Numbers *reported* by the SGCD paper, shown as labelled reference rows — never our measurements.

Source: T. Ding, J. Xin, J. P. De la Cruz Weinstein, "Keep Policy Gradient in Charge:
Sibling-Guided Credit Distillation for Long-Horizon Tool-Use Agents", arXiv 2606.12634
(v1/v2 abstracts; the model name Qwen3.5-4B and SDPO's 0% on action tasks come from secondary
summaries of the paper). Point estimates, no seeds or variances were reported. The paper's
τ³ user-simulator model, trial count and AppWorld SGC are not known to us.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CITATION", "REFERENCE_RESULTS", "ReferenceResult", "references_for"]

CITATION = "arXiv 2606.12634 (SGCD paper), reported, not measured here"


@dataclass(frozen=True)
class ReferenceResult:
    """One reported result. Metric values use the paper's units: pass@1 as a fraction,
    TGC in percent. Fields left ``None`` were not reported."""

    env: str
    """Benchmark family: an env's registered ``reference_family`` (``"tau3-airline"``, ``"appworld"``)."""
    split: str
    method: str
    model: str
    pass_at_1: float | None = None
    action_pass: float | None = None
    tgc: float | None = None
    n_tasks: int | None = None
    """Tasks the paper evaluated (None: not reported, shown as "—")."""
    trials: int | None = None
    """Trials per task the paper ran (None: not reported)."""
    note: str = ""
    source: str = CITATION


_MODEL = "Qwen3.5-4B"

REFERENCE_RESULTS: tuple[ReferenceResult, ...] = (
    ReferenceResult("tau3-airline", "test", "grpo", _MODEL, pass_at_1=0.583),
    ReferenceResult("tau3-airline", "test", "sgcd", _MODEL, pass_at_1=0.602),
    ReferenceResult(
        "tau3-airline", "test", "sdpo", _MODEL, pass_at_1=0.317, action_pass=0.0,
        note="0% on action tasks (tool-use collapse)",
    ),
    ReferenceResult("appworld", "test_normal", "grpo", _MODEL, tgc=42.9),
    ReferenceResult("appworld", "test_normal", "sgcd", _MODEL, tgc=45.6),
    ReferenceResult("appworld", "test_challenge", "grpo", _MODEL, tgc=24.7),
    ReferenceResult("appworld", "test_challenge", "sgcd", _MODEL, tgc=27.0),
)
"""The paper's reported results (method keys are our CLI names; "grpo" = its GRPO+KL)."""


def references_for(family: str) -> list[ReferenceResult]:
    """Reported results for a benchmark family (empty for one the paper did not use)."""
    return [r for r in REFERENCE_RESULTS if r.env == family]
