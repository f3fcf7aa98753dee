"""The offline stand-in summarizer: a credit reference from aligned action sequences, no LLM."""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .reference import KINDS, CreditItem, CreditReference, CreditReferenceError, Kind, StepRef
from .steps import Step, clip_text, describe_action

#: ``CreditReference.source`` of references built by :func:`offline_contrast_reference`.
OFFLINE_SOURCE = "offline-contrast (stand-in summarizer, no LLM)"


def _norm(value: Any) -> Any:
    """Normalise argument values for matching: strings stripped and case-folded, recursively."""
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, Mapping):
        return {str(k): _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def _signature(step: Step, key_args: Mapping[str, Collection[str]] | None) -> tuple[str, str]:
    """(tool, canonical key arguments) of a tool step; ``key_args[tool]`` restricts the keys."""
    assert step.tool is not None
    args = dict(step.arguments or {})
    if key_args is not None and step.tool in key_args:
        args = {k: v for k, v in args.items() if k in key_args[step.tool]}
    return step.tool, json.dumps(_norm(args), sort_keys=True, default=str)


def offline_contrast_reference(
    success: Sequence[Step],
    failures: Sequence[Sequence[Step]],
    *,
    write_tools: Collection[str] = (),
    key_args: Mapping[str, Collection[str]] | None = None,
    max_items: int = 8,
) -> CreditReference:
    """Offline stand-in summarizer: derive a credit reference by aligning action sequences.

    No LLM. For each failed sibling F_j, the tool-call signatures σ = (tool, normalised key
    arguments) of the success and of F_j are aligned with ``difflib.SequenceMatcher``
    (plain messages are left out of the alignment). From the opcodes:

    - *decisive*: a success call whose signature is missing from a failure's aligned sequence
      (``delete``/``replace`` on the success side); writes first, then by how many failures
      miss it, then by position;
    - *error*: a failure step whose result is an error, or a failure call absent from the
      success (``insert``/``replace`` on the failure side), writes ("wrong write") first;
    - *correction*: at the first divergence of each F_j, the success's call at that point.

    ``write_tools`` names the state-changing tools (pass ``sgcd_envs.tau3_airline.WRITE_TOOLS``).
    ``key_args`` optionally restricts, per tool, which arguments enter the signature.
    ``source`` is :data:`OFFLINE_SOURCE`. Heuristic of our own (SGCD uses an external LLM).

    Raises:
        CreditReferenceError: no contrast found (the failures call the same tools with the same
            arguments as the success, and no failure step has an error).
    """
    if not failures:
        raise CreditReferenceError("offline_contrast_reference: needs at least one failed sibling.")
    writes = set(write_tools)
    s_calls = [s for s in success if s.tool is not None]
    s_sigs = [_signature(s, key_args) for s in s_calls]
    decisive: dict[int, int] = {}  # success step index -> number of failures missing it
    errors: dict[tuple[int, int], tuple[bool, str]] = {}  # (j, step) -> (is_write, text)
    corrections: list[tuple[StepRef, str]] = []
    for j, fail in enumerate(failures, start=1):
        f_calls = [s for s in fail if s.tool is not None]
        f_sigs = [_signature(s, key_args) for s in f_calls]
        ops = difflib.SequenceMatcher(None, s_sigs, f_sigs, autojunk=False).get_opcodes()
        first_divergence = True
        for tag, i1, i2, j1, j2 in ops:
            if tag == "equal":
                continue
            for s in s_calls[i1:i2]:
                decisive[s.index] = decisive.get(s.index, 0) + 1
            for f in f_calls[j1:j2]:
                is_write = f.tool in writes
                what = "wrong write" if is_write else "call not in the successful attempt"
                errors.setdefault((j, f.index), (is_write, f"{what}: {describe_action(f)}."))
            if first_divergence:
                first_divergence = False
                right = (f"do {describe_action(s_calls[i1])} (as S{s_calls[i1].index})"
                         if i1 < i2 else "stop here; the successful attempt made no further call")
                if j1 < j2:
                    at = f_calls[j1].index
                    wrong = f" instead of {describe_action(f_calls[j1])}"
                else:  # the failure stopped early: point at its last step (or its first)
                    at = fail[-1].index if fail else 1
                    wrong = " (the failed attempt never made this call)"
                if fail or j1 < j2:
                    corrections.append((StepRef(j, at), f"first divergence: {right}{wrong}."))
        for f in fail:
            if f.is_error:
                errors[(j, f.index)] = (
                    f.tool in writes,
                    f"{describe_action(f)} returned an error: {clip_text(f.result, 120)}.",
                )
    by_index = {s.index: s for s in s_calls}
    dec_sorted = sorted(decisive, key=lambda k: (by_index[k].tool not in writes, -decisive[k], k))
    err_sorted = sorted(errors, key=lambda k: (not errors[k][0], k))
    n_fail = len(failures)
    candidates: list[tuple[Kind, StepRef, str]] = []
    for k in dec_sorted:
        s = by_index[k]
        kind_word = "write" if s.tool in writes else "call"
        candidates.append(("decisive", StepRef(0, k),
                           f"{kind_word} {describe_action(s)} was missing or different in "
                           f"{decisive[k]} of {n_fail} failed attempt(s)."))
    candidates += [("error", StepRef(j, k), errors[(j, k)][1]) for (j, k) in err_sorted]
    candidates += [("correction", ref, text) for ref, text in corrections]
    if not candidates:
        raise CreditReferenceError(
            "offline_contrast_reference: no contrast found (same calls, no errors in failures)."
        )
    # Interleave kinds so a small max_items still covers decisive, error and correction.
    picked: list[tuple[Kind, StepRef, str]] = []
    queues = {kind: [c for c in candidates if c[0] == kind] for kind in KINDS}
    while len(picked) < max_items and any(queues.values()):
        for kind in KINDS:
            if queues[kind] and len(picked) < max_items:
                picked.append(queues[kind].pop(0))
    picked.sort(key=lambda c: KINDS.index(c[0]))
    items = tuple(CreditItem(number=i, kind=k, step=r, text=t)
                  for i, (k, r, t) in enumerate(picked, start=1))
    return CreditReference(items=items, source=OFFLINE_SOURCE)
