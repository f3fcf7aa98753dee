"""A deterministic scripted user: an offline STAND-IN for τ's LLM user simulator, shared by
the τ domains (each sets the questions for details its user knows, :attr:`ScriptedUser.ask_info`).

Its numbers are not τ benchmark numbers: every result it produces carries
``info["user_simulator"] == "scripted-stand-in"``. Rules, in order, on each agent message:

1. after ``max_user_turns`` replies, or when the agent's message signals it is done
   ("anything else", "have a great day", "goodbye", ...): ``###STOP###``;
2. right after a successful ``transfer_to_human_agents`` call: ``###TRANSFER###``;
3. the agent asks for an id/name/detail the user knows (the domain's ``ask_info``): the
   task's ``known_info`` again;
4. a confirmation question ("confirm", "proceed", "would you like", "yes/no", ...):
   "Yes, please go ahead.";
5. any other question, the first time: the task's ``task_instructions`` in the first person (what
   the user wants done); afterwards "I don't know.";
6. anything else: "I don't know."

The opening message is the task's ``reason_for_call`` and ``known_info`` turned into the first
person ("You are" → "I am", "Your" → "My", ...). The user states ``task_instructions`` once when
asked, but never acts on them (negotiation, persistence, changes of mind), so tasks that need
such behaviour are still not solvable with it.
"""

from __future__ import annotations

import re
from typing import Any

STAND_IN_NAME = "scripted-stand-in"

_DONE = re.compile(r"anything else|have a (?:great|good|nice|wonderful) day|goodbye|bye\b|take care|"
                   r"glad (?:i|we) could help|###stop###", re.IGNORECASE)
_CONFIRM = re.compile(r"confirm|proceed|would you like|do you want|shall i|should i|go ahead|"
                      r"\(yes/no\)|yes or no|is that (?:correct|right|ok)|okay\?", re.IGNORECASE)
_ASK_ANY = re.compile(r"user id|your (?:full )?name|email|provide (?:your|the)", re.IGNORECASE)
_PRONOUNS = [
    (r"\bYou are\b", "I am"), (r"\byou are\b", "I am"), (r"\bYou're\b", "I'm"), (r"\byou're\b", "I'm"),
    (r"\bYou were\b", "I was"), (r"\byou were\b", "I was"), (r"\bYou have\b", "I have"), (r"\byou have\b", "I have"),
    (r"\bYourself\b", "Myself"), (r"\byourself\b", "myself"), (r"\bYours\b", "Mine"), (r"\byours\b", "mine"),
    (r"\bYour\b", "My"), (r"\byour\b", "my"), (r"\bYou\b", "I"), (r"\b(to|for|with|told|asked|gave|give|help|helps|tell|let|call|called|sent|send|allow|allows|cause|caused|than) you\b", r"\1 me"),
    (r"\byou\b", "I"),
]


def first_person(text: str) -> str:
    """Swap second-person scenario text to the first person (a crude, deterministic rewrite)."""
    for pattern, repl in _PRONOUNS:
        text = re.sub(pattern, repl, text)
    return re.sub(r"  +", " ", text).strip()


class ScriptedUser:
    """Deterministic scripted user (offline stand-in, not τ's LLM user); see module doc."""

    name = STAND_IN_NAME
    ask_info: re.Pattern[str] = _ASK_ANY
    """A question for an id/name/detail the user knows (answered with ``known_info``)."""

    def __init__(self, max_user_turns: int = 10) -> None:
        if not isinstance(max_user_turns, int) or max_user_turns < 1:
            raise ValueError(f"max_user_turns must be a positive int, got {max_user_turns!r}")
        self.max_user_turns = max_user_turns
        self._known = ""
        self._wants = ""
        self._turns = 0

    def reset(self, task: Any, seed: int | None = None) -> str:
        instr = task.instructions
        self._known = first_person(instr.get("known_info") or "")
        self._wants = first_person(instr.get("task_instructions") or "")
        self._turns = 0
        reason = first_person(instr.get("reason_for_call") or "")
        return f"Hi! {reason} {self._known}".strip()

    def respond(self, messages: list[dict[str, Any]]) -> str:
        self._turns += 1
        last = messages[-1].get("content", "") if messages else ""
        if self._turns > self.max_user_turns or _DONE.search(last):
            return "###STOP###"
        if _transferred(messages):
            return "###TRANSFER###"
        if self.ask_info.search(last) and self._known:
            return self._known
        if _CONFIRM.search(last):
            return "Yes, please go ahead."
        if "?" in last and self._wants:
            wants, self._wants = self._wants, ""
            return wants
        return "I don't know."


def _transferred(messages: list[dict[str, Any]]) -> bool:
    """A successful transfer_to_human_agents result since the last user message."""
    for m in reversed(messages):
        if m["role"] == "user":
            return False
        if m["role"] == "tool" and m.get("name") == "transfer_to_human_agents" and not m["content"].startswith("Error:"):
            return True
    return False
