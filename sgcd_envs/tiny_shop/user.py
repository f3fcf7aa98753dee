"""The tiny-shop user: deterministic and designed for this env (no LLM, and no stand-in for one:
its numbers are the env's own). Its first message is the task's ``request``, which already names
every id the agent needs. Then, on each agent message (tool calls never reach it), in order:

0. an empty message (no text beside its calls, e.g. a malformed action): the request again, a
   reply that does not count towards ``max_user_turns``;
1. after ``max_user_turns`` replies, or when the message closes the conversation ("anything
   else", "goodbye", "have a nice day", ...): ``###STOP###``;
2. a question (a ``?``) that asks for something ("id", "which", "what", "number", "city"): the
   task's ``facts`` ("My user id is u3.", "My order is o12. Send it to Rome."); any other question
   ("Shall I cancel it?"): "Yes, please go ahead.";
3. a statement naming one of the task's order or user ids is the agent's answer: ``###STOP###``;
4. any other statement ("Let me check."): the ``facts``.

So a conversation ends at the agent's first answer about the request: an agent that wants to act
calls the tools before it talks. Text that is neither (garbage, hostile output) never ends it
before ``max_user_turns`` replies.
"""

from __future__ import annotations

import re
from typing import Any

from ..core import USER_STOP_TOKENS
from .tasks import Task

USER_NAME = "tiny-shop-user"
STOP = USER_STOP_TOKENS[0]  # "###STOP###"
CONFIRMED = "Yes, please go ahead."

_DONE = re.compile(r"anything else|have a (?:great|good|nice) day|goodbye|\bbye\b|take care", re.IGNORECASE)
_ASKS = re.compile(r"\bid\b|which|what|number|city", re.IGNORECASE)


class ShopUser:
    """Deterministic tiny-shop user (see the module doc for its rules)."""

    name = USER_NAME

    def __init__(self, max_user_turns: int = 4) -> None:
        if not isinstance(max_user_turns, int) or max_user_turns < 1:
            raise ValueError(f"max_user_turns must be a positive int, got {max_user_turns!r}")
        self.max_user_turns = max_user_turns
        self._request = self._facts = ""
        self._ids = re.compile("(?!)")  # matches nothing before reset
        self._turns = 0

    def reset(self, task: Task, seed: int | None = None) -> str:
        self._request, self._facts = task.request, task.facts
        ids = sorted({o.id for o in task.world} | {o.user for o in task.world})
        self._ids = re.compile(r"\b(?:" + "|".join(ids) + r")\b", re.IGNORECASE)
        self._turns = 0
        return task.request

    def respond(self, messages: list[dict[str, Any]]) -> str:
        last = messages[-1].get("content", "") if messages else ""
        if not last.strip():
            return self._request
        self._turns += 1
        if self._turns > self.max_user_turns or _DONE.search(last):
            return STOP
        if "?" in last:
            return self._facts if _ASKS.search(last) else CONFIRMED
        return STOP if self._ids.search(last) else self._facts
