"""Trajectories as steps, and which siblings a group's credit reference contrasts (SPEC §3.5a)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def clip_text(text: str, limit: int) -> str:
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
        Step(index=i + 1, text=clip_text(s["text"], max_text_chars), tool=s["tool"],
             arguments=s["arguments"], result=clip_text(s["result"], max_result_chars),
             is_error=s["is_error"])
        for i, s in enumerate(steps)
    ]




def args_json(arguments: Mapping[str, Any] | None) -> str:
    return json.dumps(arguments or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def describe_action(step: Step, max_chars: int = 160) -> str:
    """``tool(args)`` for a call, ``message "..."`` for a plain message."""
    if step.tool is None:
        return f'message "{clip_text(step.text, max_chars)}"'
    return f"{step.tool}({clip_text(args_json(step.arguments), max_chars)})"
