"""SGCD summarizers: sibling contrast → credit reference (SPEC §3.5b).

Two implementations with one method, ``reference(task_prompt, success, failures)``:

- :class:`LLMSummarizer`: an external LLM through :class:`~adapters.llm.client.ChatClient`.
- :class:`OfflineSummarizer`: the offline stand-in (no LLM), the embedded default; it wraps
  :func:`algorithms.credit_reference.offline_contrast_reference`.

Both return ``None`` when no reference can be had (request failed, answer unparseable, no
contrast found) and count it, by kind and by cause (``failure_causes``, shown by
``failure_summary()`` in the run's summary); the trainer then uses w = 1 for that group (plain
GRPO+KL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from algorithms.credit_reference import (
    OFFLINE_SOURCE,
    CreditReference,
    CreditReferenceError,
    Step,
    credit_reference_request,
    offline_contrast_reference,
    parse_credit_reference,
)

from .client import ChatClient, LLMError, short_reason

__all__ = ["MAX_FAILURE_CAUSES", "LLMSummarizer", "OfflineSummarizer", "Summarizer"]

MAX_FAILURE_CAUSES = 16
"""Distinct causes a summarizer keeps in ``failure_causes``; later new ones count as ``"<kind>: other"``."""


def _cause_key(causes: Counter[str], kind: str, reason: str) -> str:
    """The ``failure_causes`` key of one fallback: ``"<kind>: <short reason>"`` (see
    :func:`~adapters.llm.client.short_reason`), or ``"<kind>: other"`` once the Counter is full."""
    key = f"{kind}: {short_reason(reason)}"
    return key if key in causes or len(causes) < MAX_FAILURE_CAUSES else f"{kind}: other"


def fallback_summary(failures: int, causes: Counter[str]) -> str:
    """One line for the run's summary, e.g. ``"2 fell back to w = 1 (llm: HTTP 500: ... ×2)"``."""
    if not failures:
        return "0 fell back to w = 1"
    shown = ", ".join(f"{cause} ×{n}" for cause, n in causes.most_common())
    return f"{failures} fell back to w = 1 ({shown})"


class Summarizer(Protocol):
    """What the trainers need from a summarizer."""

    name: str
    calls: int
    failures: int
    cache_hits: int

    def reference(
        self, task_prompt: str, success: Sequence[Step], failures: Sequence[Sequence[Step]]
    ) -> CreditReference | None: ...


class FallbackCounts:
    """The counters every summarizer keeps: ``calls``, ``failures`` (groups that fell back to
    w = 1) by kind (``failure_reasons``) and by cause (``failure_causes``), ``cache_hits`` and
    ``last_error``."""

    def __init__(self) -> None:
        self.calls = self.failures = self.cache_hits = 0
        self.failure_reasons: Counter[str] = Counter()
        self.failure_causes: Counter[str] = Counter()
        self.last_error: str | None = None

    def failure_summary(self) -> str:
        """The fallbacks so far and their causes, as one line for the run's summary."""
        return fallback_summary(self.failures, self.failure_causes)

    def _fail(self, kind: str, reason: str, message: str) -> None:
        """Count one fallback; returns None (the caller's "no reference")."""
        self.failures += 1
        self.failure_reasons[kind] += 1
        self.failure_causes[_cause_key(self.failure_causes, kind, reason)] += 1
        self.last_error = f"{kind}: {message}"
        return None


class LLMSummarizer(FallbackCounts):
    """Credit references from an external LLM (any OpenAI-compatible endpoint).

    Sends :func:`credit_reference_request`, parses with :func:`parse_credit_reference`
    (step labels checked against the step counts). On :class:`LLMError` or
    :class:`CreditReferenceError` it returns None, increments ``failures`` and records the
    reason in ``failure_reasons`` ("llm" / "parse"), ``failure_causes`` (kind and short cause,
    e.g. ``"llm: timed out after 60 s"``) and ``last_error``. An unparseable answer is
    evicted from the client's cache so a later call asks again.

    Counters: ``calls`` (reference requests), ``failures``, ``cache_hits`` (answers served from
    the client's disk cache).
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        max_failures: int = 3,
        max_items: int = 8,
        max_result_chars: int = 200,
    ) -> None:
        super().__init__()
        self.client = client
        self.max_failures = max_failures
        self.max_items = max_items
        self.max_result_chars = max_result_chars
        self.name = f"llm:{client.endpoint.model}"

    def reference(
        self, task_prompt: str, success: Sequence[Step], failures: Sequence[Sequence[Step]]
    ) -> CreditReference | None:
        """The parsed credit reference for one group, or None (counted) on any failure."""
        self.calls += 1
        shown = list(failures[: self.max_failures])
        messages = credit_reference_request(
            task_prompt, success, shown, max_failures=self.max_failures,
            max_items=self.max_items, max_result_chars=self.max_result_chars,
        )
        try:
            answer = self.client.request(messages)
        except LLMError as exc:
            return self._fail("llm", exc.reason, str(exc))
        self.cache_hits += int(answer.cached)
        try:
            return parse_credit_reference(
                answer.text, source=self.name, n_success_steps=len(success),
                n_failure_steps=[len(f) for f in shown], max_items=self.max_items,
            )
        except CreditReferenceError as exc:
            self.client.evict(answer.key)
            return self._fail("parse", str(exc), str(exc))


class OfflineSummarizer(FallbackCounts):
    """The offline stand-in summarizer: aligns success vs failure action sequences, no LLM.

    Same interface as :class:`LLMSummarizer`; references carry ``source`` =
    :data:`~algorithms.credit_reference.OFFLINE_SOURCE`. Returns None (counted in
    ``failures``) when the siblings show no contrast. ``cache_hits`` stays 0.
    """

    def __init__(
        self,
        *,
        write_tools: Collection[str] = (),
        key_args: Mapping[str, Collection[str]] | None = None,
        max_items: int = 8,
    ) -> None:
        super().__init__()
        self.write_tools = frozenset(write_tools)
        self.key_args = key_args
        self.max_items = max_items
        self.name = OFFLINE_SOURCE

    def reference(
        self, task_prompt: str, success: Sequence[Step], failures: Sequence[Sequence[Step]]
    ) -> CreditReference | None:
        """The offline contrast reference for one group (``task_prompt`` is not used)."""
        del task_prompt  # the alignment needs only the action sequences
        self.calls += 1
        try:
            return offline_contrast_reference(
                success, failures, write_tools=self.write_tools, key_args=self.key_args,
                max_items=self.max_items,
            )
        except CreditReferenceError as exc:
            return self._fail("no_contrast", str(exc), str(exc))
