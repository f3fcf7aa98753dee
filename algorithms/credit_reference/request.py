"""The credit-reference request: siblings rendered as labelled step lists and the chat
messages that ask an external LLM for a reference (SPEC §3.5b; the wording is ours)."""

from __future__ import annotations

from collections.abc import Sequence

from .steps import Step, args_json, clip_text


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
            lines.append(f'{tag} message: "{clip_text(step.text, max_text_chars)}"')
        else:
            line = f"{tag} call {step.tool} {clip_text(args_json(step.arguments), max_args_chars)}"
            if step.text.strip():
                line += f' | says: "{clip_text(step.text, max_text_chars)}"'
            lines.append(line)
        if step.result or step.is_error:
            mark = "ERROR: " if step.is_error else ""
            lines.append(f"    -> {mark}{clip_text(step.result, max_result_chars)}")
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
        clip_block(task_prompt, max_task_chars),
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


def clip_block(text: str, limit: int) -> str:
    """Cut a multi-line block to ``limit`` characters, keeping its line breaks."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
