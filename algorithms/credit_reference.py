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

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "OFFLINE_SOURCE",
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

Kind = Literal["decisive", "error", "correction"]
KINDS: tuple[Kind, ...] = ("decisive", "error", "correction")

#: ``CreditReference.source`` of references built by :func:`offline_contrast_reference`.
OFFLINE_SOURCE = "offline-contrast (stand-in summarizer, no LLM)"

#: Header line of the reference inside the teacher's system message.
REFERENCE_HEADER = "Credit reference (training-only notes on earlier attempts at this task):"


class CreditReferenceError(ValueError):
    """A credit reference could not be parsed, validated or derived (one-line reason)."""


# --------------------------------------------------------------------------------------------
# Steps and sibling selection
# --------------------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters (``…`` marks a cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


@dataclass(frozen=True)
class Step:
    """One agent step of a trajectory, as shown to the summarizer.

    Attributes:
        index: 1-based position in the trajectory's step list.
        text: what the assistant said at this step (may be empty for a bare tool call).
        tool: name of the tool called, or ``None`` for a plain message to the user.
        arguments: the call's arguments, or ``None`` for a plain message.
        result: short summary of what came back (tool result, or the user's reply).
        is_error: whether the result was an error (bad call, failed tool).
    """

    index: int
    text: str = ""
    tool: str | None = None
    arguments: Mapping[str, Any] | None = field(default=None, hash=False)
    result: str = ""
    is_error: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or self.index < 1:
            raise ValueError(f"Step.index must be an int >= 1, got {self.index!r}.")
        if self.tool is None and self.arguments is not None:
            raise ValueError("Step.arguments must be None when Step.tool is None.")
        if self.arguments is not None and not isinstance(self.arguments, Mapping):
            raise ValueError(
                f"Step.arguments must be a mapping or None, got {type(self.arguments).__name__}."
            )


def select_siblings(
    rewards: Sequence[float],
    *,
    success_threshold: float = 1.0,
    num_steps: Sequence[int] | None = None,
) -> tuple[int | None, list[int]]:
    """Pick the sibling evidence of one group: the best success and all failures.

    success ⇔ R_i ≥ threshold;  best = argmax_i (R_i, −n_steps_i, −i) over successes;
    failed = [i : R_i < threshold] in ascending order.

    Ties on reward go to the sibling with fewer steps (when ``num_steps`` is given), then to the
    lower index, so the choice is deterministic. Our choice (SGCD does not say which success).

    Returns:
        ``(best_success_index or None, failed_indices)``.

    Raises:
        ValueError: non-finite reward, or ``num_steps`` of another length / with negatives.
    """
    rewards = [float(r) for r in rewards]
    for i, r in enumerate(rewards):
        if not math.isfinite(r):
            raise ValueError(f"rewards[{i}] must be finite, got {r}.")
    if not math.isfinite(success_threshold):
        raise ValueError(f"success_threshold must be finite, got {success_threshold}.")
    if num_steps is not None:
        if len(num_steps) != len(rewards):
            raise ValueError(
                f"num_steps has {len(num_steps)} entries but rewards has {len(rewards)}."
            )
        if any(n < 0 for n in num_steps):
            raise ValueError(f"num_steps must be >= 0, got {list(num_steps)}.")
    successes = [i for i, r in enumerate(rewards) if r >= success_threshold]
    failed = [i for i, r in enumerate(rewards) if r < success_threshold]
    if not successes:
        return None, failed

    def rank(i: int) -> tuple[float, int, int]:
        steps = num_steps[i] if num_steps is not None else 0
        return (-rewards[i], steps, i)

    return min(successes, key=rank), failed


def steps_from_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    max_text_chars: int = 300,
    max_result_chars: int = 200,
) -> list[Step]:
    """Convert an episode's OpenAI chat messages into a list of :class:`Step`.

    Each structured tool call of an assistant message (``tool_calls`` field, OpenAI format;
    ``arguments`` as a JSON string or a dict) becomes one step whose result is the ``role:
    "tool"`` message with the same ``tool_call_id`` (or, without ids, the next tool message in
    order). An assistant message without calls becomes a message step whose result is the
    user's next reply. A tool result is an error when its text starts with ``Error`` (the
    convention of τ³'s tool runner) or the message carries ``"is_error": True``.

    Assistant messages whose calls are still raw text (e.g. ``<tool_call>`` blocks) should be
    parsed by the caller first (``sgcd_envs.core.parse_tool_calls``); this module has no parser
    of its own, so such text stays a message step.
    """
    steps: list[dict[str, Any]] = []
    by_call_id: dict[str, dict[str, Any]] = {}
    pending_in_order: list[dict[str, Any]] = []
    last_message_step: dict[str, Any] | None = None
    for pos, msg in enumerate(messages):
        role = msg.get("role")
        content = msg.get("content") or ""
        if not isinstance(content, str):  # list-of-parts content
            content = " ".join(
                part.get("text", "") for part in content if isinstance(part, Mapping)
            )
        if role == "assistant":
            calls = msg.get("tool_calls") or []
            if not calls:
                last_message_step = {"text": content, "tool": None, "arguments": None,
                                     "result": "", "is_error": False}
                steps.append(last_message_step)
                continue
            last_message_step = None
            for k, call in enumerate(calls):
                fn = call.get("function", call)
                args = fn.get("arguments", {})
                if isinstance(args, str):
                    try:
                        args = json.loads(args) if args.strip() else {}
                    except json.JSONDecodeError:
                        args = {"_raw": args}
                if not isinstance(args, Mapping):
                    args = {"_raw": args}
                step = {"text": content if k == 0 else "", "tool": str(fn.get("name")),
                        "arguments": dict(args), "result": "", "is_error": False}
                steps.append(step)
                if call.get("id"):
                    by_call_id[str(call["id"])] = step
                pending_in_order.append(step)
        elif role == "tool":
            step = by_call_id.pop(str(msg.get("tool_call_id")), None)
            if step is None and pending_in_order:
                step = pending_in_order[0]
            if step is None:
                raise ValueError(f"messages[{pos}] is a tool result with no preceding tool call.")
            if step in pending_in_order:
                pending_in_order.remove(step)
            step["result"] = content
            step["is_error"] = bool(msg.get("is_error")) or content.lstrip().startswith("Error")
        elif role == "user" and last_message_step is not None:
            last_message_step["result"] = f"user: {content}"
            last_message_step = None
    return [
        Step(index=i + 1, text=_clip(s["text"], max_text_chars), tool=s["tool"],
             arguments=s["arguments"], result=_clip(s["result"], max_result_chars),
             is_error=s["is_error"])
        for i, s in enumerate(steps)
    ]


# --------------------------------------------------------------------------------------------
# Rendering and the request
# --------------------------------------------------------------------------------------------


def _args_json(arguments: Mapping[str, Any] | None) -> str:
    return json.dumps(arguments or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def _describe_action(step: Step, max_chars: int = 160) -> str:
    """``tool(args)`` for a call, ``message "..."`` for a plain message."""
    if step.tool is None:
        return f'message "{_clip(step.text, max_chars)}"'
    return f"{step.tool}({_clip(_args_json(step.arguments), max_chars)})"


def render_steps(
    steps: Sequence[Step],
    *,
    prefix: str = "",
    max_result_chars: int = 200,
    max_text_chars: int = 300,
    max_args_chars: int = 300,
) -> str:
    """Render steps as a compact numbered list, one step per line plus an optional result line.

    Format (``prefix`` is ``"S"`` for the success, ``"F2."`` for failed sibling 2)::

        S1. call get_user_details {"user_id":"x"} | says: "Let me look you up."
            -> {"name": ...}
        S2. message: "Your reservation is cancelled."
            -> user: thanks
        F2.3. call cancel_reservation {...}
            -> ERROR: Error: reservation not found

    Long texts, arguments and results are cut to the given character limits.
    """
    if max_result_chars < 1 or max_text_chars < 1 or max_args_chars < 1:
        raise ValueError("render_steps: character limits must be >= 1.")
    lines: list[str] = []
    for step in steps:
        tag = f"{prefix}{step.index}."
        if step.tool is None:
            lines.append(f'{tag} message: "{_clip(step.text, max_text_chars)}"')
        else:
            line = f"{tag} call {step.tool} {_clip(_args_json(step.arguments), max_args_chars)}"
            if step.text.strip():
                line += f' | says: "{_clip(step.text, max_text_chars)}"'
            lines.append(line)
        if step.result or step.is_error:
            mark = "ERROR: " if step.is_error else ""
            lines.append(f"    -> {mark}{_clip(step.result, max_result_chars)}")
    return "\n".join(lines) if lines else "(no steps)"


_REQUEST_SYSTEM = """\
You review attempts by a tool-using agent (e.g. a customer-service agent calling tools, or a \
coding agent calling app APIs) in order to assign credit for \
reinforcement-learning training. Several attempts were made at the same task: one reached the \
correct outcome, the others did not. Compare them and say which individual steps made the \
difference.

Answer ONLY with numbered lines, one finding per line, in exactly this form:
<n>. [DECISIVE] S<k>: <why step k of the successful attempt mattered>
<n>. [ERROR] F<j>.<k>: <what went wrong at step k of failed attempt j>
<n>. [CORRECTION] F<j>.<k>: <the action that should have been taken at that step instead>

Rules:
- Refer to steps only by the labels shown (S3, F1.4, ...). Number your lines 1, 2, 3, ...
- Give between 2 and {max_items} lines; put the most important findings first.
- Name the right action concretely (tool or API and key arguments, or what to tell the user), \
but do not write out a complete solution or a full transcript.
- These notes are used only during training and are never shown to the deployed agent.
- No introduction, no summary, nothing besides the numbered lines."""


def credit_reference_request(
    task_prompt: str,
    success: Sequence[Step],
    failures: Sequence[Sequence[Step]],
    *,
    max_failures: int = 3,
    max_items: int = 8,
    max_result_chars: int = 200,
    max_task_chars: int = 4000,
) -> list[dict[str, str]]:
    """Build the OpenAI chat messages that ask an external LLM for a credit reference.

    ``[system: role + strict line format, user: task + rendered success + rendered failures]``.
    Only the first ``max_failures`` failed siblings are shown (their labels stay F1..Fm). The
    wording is ours; SGCD only says the LLM summarises the sibling contrast into a step-wise,
    training-only reference (arXiv 2606.12634, abstract).

    Raises:
        ValueError: empty success, no failures, or a limit < 1.
    """
    if not success:
        raise ValueError("credit_reference_request: the successful sibling has no steps.")
    if not failures:
        raise ValueError("credit_reference_request: needs at least one failed sibling.")
    if max_failures < 1 or max_items < 2:
        raise ValueError(
            f"credit_reference_request: max_failures must be >= 1 and max_items >= 2, "
            f"got {max_failures} and {max_items}."
        )
    parts = [
        "TASK (the user's request and the agent's instructions, abridged):",
        _clip_block(task_prompt, max_task_chars),
        "",
        "SUCCESSFUL ATTEMPT (labels S<k>):",
        render_steps(success, prefix="S", max_result_chars=max_result_chars),
    ]
    for j, steps in enumerate(failures[:max_failures], start=1):
        parts += ["", f"FAILED ATTEMPT {j} (labels F{j}.<k>):",
                  render_steps(steps, prefix=f"F{j}.", max_result_chars=max_result_chars)]
    parts += ["", "Write the numbered credit reference now."]
    return [
        {"role": "system", "content": _REQUEST_SYSTEM.format(max_items=max_items)},
        {"role": "user", "content": "\n".join(parts)},
    ]


def _clip_block(text: str, limit: int) -> str:
    """Cut a multi-line block to ``limit`` characters, keeping its line breaks."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# The reference and its parser
# --------------------------------------------------------------------------------------------


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
            f"got: {_clip(text, 80)!r}"
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


# --------------------------------------------------------------------------------------------
# Offline stand-in summarizer
# --------------------------------------------------------------------------------------------


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
                errors.setdefault((j, f.index), (is_write, f"{what}: {_describe_action(f)}."))
            if first_divergence:
                first_divergence = False
                right = (f"do {_describe_action(s_calls[i1])} (as S{s_calls[i1].index})"
                         if i1 < i2 else "stop here; the successful attempt made no further call")
                if j1 < j2:
                    at = f_calls[j1].index
                    wrong = f" instead of {_describe_action(f_calls[j1])}"
                else:  # the failure stopped early: point at its last step (or its first)
                    at = fail[-1].index if fail else 1
                    wrong = " (the failed attempt never made this call)"
                if fail or j1 < j2:
                    corrections.append((StepRef(j, at), f"first divergence: {right}{wrong}."))
        for f in fail:
            if f.is_error:
                errors[(j, f.index)] = (
                    f.tool in writes,
                    f"{_describe_action(f)} returned an error: {_clip(f.result, 120)}.",
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
                           f"{kind_word} {_describe_action(s)} was missing or different in "
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
