"""The credit reference: numbered decisive / error / correction items with step labels, its
parser for an LLM's answer, and its rendering (SPEC §3.5c)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .steps import clip_text

Kind = Literal["decisive", "error", "correction"]
KINDS: tuple[Kind, ...] = ("decisive", "error", "correction")


class CreditReferenceError(ValueError):
    """A credit reference could not be parsed, validated or derived (one-line reason)."""


@dataclass(frozen=True)
class StepRef:
    """A step label: ``S<k>`` (sibling 0 = the success) or ``F<j>.<k>`` (failed sibling j ≥ 1)."""

    sibling: int
    step: int

    def __post_init__(self) -> None:
        if self.sibling < 0 or self.step < 1:
            raise ValueError(f"StepRef needs sibling >= 0 and step >= 1, got {self}.")

    def __str__(self) -> str:
        return f"S{self.step}" if self.sibling == 0 else f"F{self.sibling}.{self.step}"


@dataclass(frozen=True)
class CreditItem:
    """One numbered finding of a credit reference."""

    number: int
    kind: Kind
    step: StepRef | None
    text: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"CreditItem.kind must be one of {', '.join(KINDS)}, got {self.kind!r}.")


@dataclass(frozen=True)
class CreditReference:
    """A parsed, validated credit reference.

    Attributes:
        items: the numbered findings, renumbered 1..n in order.
        source: where it came from (``"llm:<model>"``, :data:`OFFLINE_SOURCE`, ...).
        dropped: lines that looked like items but were discarded (no kind label, step label
            out of range).
    """

    items: tuple[CreditItem, ...]
    source: str = "unknown"
    dropped: int = 0

    def __post_init__(self) -> None:
        if not self.items:
            raise CreditReferenceError("a credit reference needs at least one item.")

    def of_kind(self, kind: Kind) -> list[CreditItem]:
        return [item for item in self.items if item.kind == kind]


_KIND_WORDS: dict[str, Kind] = {
    "decisive": "decisive", "key": "decisive", "critical": "decisive", "good": "decisive",
    "error": "error", "mistake": "error", "harmful": "error", "wrong": "error",
    "correction": "correction", "fix": "correction", "correct": "correction",
    "right action": "correction", "should": "correction",
}
_KIND_RE = "|".join(sorted((re.escape(w) for w in _KIND_WORDS), key=len, reverse=True))
_ITEM_RE = re.compile(
    r"""^\s*(?:[-*+•]\s*)?(?:\*\*|__)?\(?(?P<num>\d{1,3})\s*[.)\]:]\s*(?:\*\*|__)?\s*(?P<rest>.*)$"""
)
_HEAD_RE = re.compile(
    rf"""^(?:\*\*|__|`)?[\[(]?\s*(?P<kind>{_KIND_RE})(?![A-Za-z0-9])(?:\s+step)?\s*[\])]?(?:\*\*|__|`)?"""
    r"""\s*[:\-–—]?\s*(?:(?P<general>general)\s*:|(?:at\s+)?(?:step\s+)?(?:\*\*|`)?"""
    r"""(?P<ref>[SF]\d+(?:\.\d+)?)(?![A-Za-z0-9])(?:\*\*|`)?\s*[:\-–—)]?)?\s*(?P<text>.*)$""",
    re.IGNORECASE,
)
_REF_RE = re.compile(r"^(?:S(?P<s>\d+)|F(?P<f>\d+)\.(?P<k>\d+))$", re.IGNORECASE)


def _parse_ref(token: str | None) -> StepRef | None | Literal[False]:
    """``"S3"`` → StepRef(0, 3); ``"F2.4"`` → StepRef(2, 4); None → None; malformed → False."""
    if token is None:
        return None
    m = _REF_RE.match(token)
    if not m:
        return False
    if m.group("s") is not None:
        return StepRef(0, int(m.group("s"))) if int(m.group("s")) >= 1 else False
    j, k = int(m.group("f")), int(m.group("k"))
    return StepRef(j, k) if j >= 1 and k >= 1 else False


def _ref_in_range(ref: StepRef, n_success: int | None, n_failure_steps: Sequence[int] | None) -> bool:
    if ref.sibling == 0:
        return n_success is None or ref.step <= n_success
    if n_failure_steps is None:
        return True
    return ref.sibling <= len(n_failure_steps) and ref.step <= n_failure_steps[ref.sibling - 1]


def parse_credit_reference(
    text: str,
    *,
    source: str = "llm",
    n_success_steps: int | None = None,
    n_failure_steps: Sequence[int] | None = None,
    max_items: int = 20,
) -> CreditReference:
    """Parse an LLM's answer into a :class:`CreditReference`.

    Accepted item lines: ``<n>. [KIND] <ref>: <text>``, tolerating markdown bullets, bold
    markers, ``n)`` numbering, kind synonyms (key/critical → decisive; mistake/harmful/wrong →
    error; fix/correct/should → correction), a missing step label, and code fences. An
    unindented line that is not an item ends the current item; an indented one continues it.
    Item lines without a known kind, or whose step label is out of range (when the step counts
    are given), are dropped and counted in ``dropped``. Items are renumbered 1..n and at most
    ``max_items`` are kept.

    Raises:
        CreditReferenceError: empty answer, no numbered lines, or no valid item.
    """
    if not isinstance(text, str) or not text.strip():
        raise CreditReferenceError("empty answer: expected numbered credit-reference lines.")
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if not ln.strip().startswith("```")]
    found: list[tuple[Kind, StepRef | None, list[str]]] = []
    numbered = dropped = 0
    current: list[str] | None = None
    for line in lines:
        m = _ITEM_RE.match(line)
        if m:
            numbered += 1
            head = _HEAD_RE.match(m.group("rest").strip())
            ref = _parse_ref(head.group("ref")) if head else False
            if head is None or ref is False or (
                ref is not None and not _ref_in_range(ref, n_success_steps, n_failure_steps)
            ):
                dropped += 1
                current = None
                continue
            body = head.group("text").strip()
            current = [body] if body else []
            found.append((_KIND_WORDS[head.group("kind").lower()], ref, current))
        elif current is not None and line[:1] in (" ", "\t") and line.strip():
            current.append(line.strip())
        else:
            current = None
    if numbered == 0:
        raise CreditReferenceError(
            f"no numbered lines in the answer (expected '1. [DECISIVE] S3: ...'); "
            f"got: {clip_text(text, 80)!r}"
        )
    items = tuple(
        CreditItem(number=i, kind=kind, step=ref, text=" ".join(body))
        for i, (kind, ref, body) in enumerate(
            [f for f in found if " ".join(f[2]).strip()][:max_items], start=1
        )
    )
    dropped += len([f for f in found if not " ".join(f[2]).strip()])
    if not items:
        raise CreditReferenceError(
            f"none of the {numbered} numbered lines is a valid item "
            f"(need a kind DECISIVE/ERROR/CORRECTION, an in-range step label and text)."
        )
    return CreditReference(items=items, source=source, dropped=dropped)


def render_credit_reference(ref: CreditReference) -> str:
    """Render a reference as the numbered lines the parser reads back (a round trip).

    ``<n>. [KIND] <step>: <text>`` per item; ``general`` stands in for an absent step label.
    """
    out = []
    for item in ref.items:
        label = f" {item.step}:" if item.step is not None else " general:"
        out.append(f"{item.number}. [{item.kind.upper()}]{label} {item.text}")
    return "\n".join(out)
