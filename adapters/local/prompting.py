"""System prompts and chat-template rendering for the local policy.

The agent's system prompt is built from the env's ``info["policy"]`` and ``info["tools"]``
and is identical for every task of an environment, so the rollout engine and the trainer
encode it once (the *shared prefix*) and feed only the per-episode *suffix* through the model.

Two variants:

- ``faithful``: the environment's full policy text and the full JSON tool schemas (the
  benchmark's setting; thousands of tokens for τ³-airline).
- ``compact``: a stand-in for CPU runs — the policy text cut to ``compact_policy_chars``,
  one signature line per tool and one short worked example. Runs that use it are labelled ``compact prompt`` in the
  output and the leaderboard; their numbers are not benchmark numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

PromptVariant = Literal["faithful", "compact"]
STAND_IN_VARIANTS: frozenset[PromptVariant] = frozenset({"compact"})
"""Variants that stand in for the benchmark's prompt (their runs are not benchmark numbers)."""

_CALL_FORMAT = (
    "To use a tool, reply with one or more blocks of the form\n"
    '<tool_call>{"name": "<tool name>", "arguments": {<JSON arguments>}}</tool_call>\n'
    "for example\n"
    '<tool_call>{"name": "get_user_details", "arguments": {"user_id": "sara_doe_496"}}</tool_call>\n'
    "Any text outside these blocks is sent to the user. Make at most the calls you need, "
    "wait for their results, and answer the user in plain text. When the customer's request is "
    "resolved, end your last message with ###STOP###."
)


_COMPACT_EXAMPLE = (
    "# Example of a conversation\n"
    "user: Hi, can you check the status of my reservation ZX81QP?\n"
    'assistant: <tool_call>{"name": "get_reservation_details", "arguments": {"reservation_id": "ZX81QP"}}</tool_call>\n'
    'tool: {"reservation_id": "ZX81QP", "status": "confirmed", "origin": "SFO", "destination": "JFK"}\n'
    "assistant: Your reservation ZX81QP from SFO to JFK is confirmed. Is there anything else I can help you with?"
)
"""A worked exchange in the compact prompt (our own invented ids): small models copy its format."""


def _tool_signature(schema: dict[str, Any]) -> str:
    fn = schema.get("function", schema)
    props = fn.get("parameters", {}).get("properties", {})
    required = set(fn.get("parameters", {}).get("required", []))
    args = ", ".join(f"{k}{'' if k in required else '?'}" for k in props)
    return f"- {fn['name']}({args})"


def system_prompt(
    policy: str,
    tools: Sequence[dict[str, Any]],
    *,
    variant: PromptVariant = "faithful",
    compact_policy_chars: int = 600,
) -> str:
    """The agent's system prompt: role, policy, tools and the tool-call format."""
    if variant == "faithful":
        tool_text = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        policy_text = policy
    elif variant == "compact":
        tool_text = "\n".join(_tool_signature(t) for t in tools) + "\n\n" + _COMPACT_EXAMPLE
        policy_text = policy[:compact_policy_chars].rstrip() + "\n[policy shortened: compact prompt]"
    else:
        raise ValueError(f"prompt variant must be 'faithful' or 'compact', got {variant!r}")
    if not tools:  # e.g. AppWorld: the env's own instructions say how to act (code blocks)
        return policy_text
    return (
        "You are a customer service agent. Follow the policy below.\n\n"
        f"# Policy\n{policy_text}\n\n# Tools\n{tool_text}\n\n# Tool-call format\n{_CALL_FORMAT}"
    )


@dataclass
class ChatRenderer:
    """Renders conversations with the tokenizer's chat template, split at the shared prefix.

    ``prefix_text`` is the rendering of the system message alone; every conversation that starts
    with that system message renders to ``prefix_text + suffix``.
    """

    tokenizer: Any
    system: str

    def __post_init__(self) -> None:
        self.prefix_text = self.render([], add_generation_prompt=False)
        self.prefix_ids: list[int] = self.encode(self.prefix_text)

    def render(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool,
               system: str | None = None) -> str:
        """The full chat-template text of ``[system] + messages``."""
        convo = [{"role": "system", "content": self.system if system is None else system}]
        convo += [_template_message(m) for m in messages]
        return self.tokenizer.apply_chat_template(convo, tokenize=False, add_generation_prompt=add_generation_prompt)

    def suffix(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        """The text after the shared prefix."""
        text = self.render(messages, add_generation_prompt=add_generation_prompt)
        if not text.startswith(self.prefix_text):
            raise ValueError("the chat template does not render the system message as a stable prefix")
        return text[len(self.prefix_text):]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prefix_ids_for(self, system: str) -> list[int]:
        """Token ids of a different system message (the teacher's context), same template."""
        return self.encode(self.render([], add_generation_prompt=False, system=system))

    def prompt_ids(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Token ids of a whole prompt ``[system, user, …]`` up to the generation prompt, split as
        a rollout's are (the system prefix, then the suffix), so the student's own prompt gives
        exactly its episode's tokens before the first generated one."""
        if not messages or messages[0].get("role") != "system":
            raise ValueError("prompt_ids needs the system message first")
        return self.prefix_ids_for(str(messages[0].get("content") or "")) + self.encode(self.suffix(messages[1:]))


def _template_message(message: dict[str, Any]) -> dict[str, Any]:
    """Keep what chat templates understand: role and content (tool results as role "tool")."""
    return {"role": message["role"], "content": message.get("content") or ""}
