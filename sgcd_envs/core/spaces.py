"""The Gymnasium spaces of the text tool-use envs: :class:`AgentAction` (assistant text or a
parsed call) and :class:`ChatMessages` (OpenAI chat messages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gymnasium import spaces

__all__ = ["AgentAction", "ChatMessages"]


_ROLES = ("user", "assistant", "tool")
_FUZZ_PIECES = (
    "Hello", "I will check that.", "{", "}", "[", "]", '"name"', '"arguments"', ":", ",", "null",
    "<tool_call>", "</tool_call>", "```json", "```", '"', "\\", "0", "-1", "1e309", "true",
    "###STOP###", "\u00e9\u4e2d", "\n", " ",
)


class AgentAction(spaces.Space):
    """Action space: the assistant's text (``str`` of at most ``max_length`` characters) or
    an already-parsed tool call (a ``dict``).

    ``sample()`` draws a malformed-ish text from pieces of tool-call syntax (a fuzz source),
    not a meaningful action.
    """

    def __init__(self, max_length: int = 100_000, tool_names: Sequence[str] = (), seed: int | None = None):
        self.max_length = max_length
        self.tool_names = tuple(tool_names)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        return (isinstance(x, str) and len(x) <= self.max_length) or isinstance(x, dict)

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> str:
        rng = self.np_random
        pieces = list(_FUZZ_PIECES) + [f'"{n}"' for n in self.tool_names]
        n = int(rng.integers(0, 24))
        return "".join(pieces[int(rng.integers(0, len(pieces)))] for _ in range(n))

    def __repr__(self) -> str:
        return f"AgentAction(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, AgentAction) and other.max_length == self.max_length


class ChatMessages(spaces.Space):
    """Observation space: a list of at most ``max_messages`` OpenAI chat messages.

    Each message is a dict with ``role`` in {"user", "assistant", "tool"} and a ``str``
    ``content``; assistant messages may carry ``tool_calls`` (a list of OpenAI call dicts),
    tool messages carry ``tool_call_id`` and ``name`` (str).
    """

    def __init__(self, max_messages: int = 200, seed: int | None = None):
        self.max_messages = max_messages
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if not isinstance(x, list) or len(x) > self.max_messages:
            return False
        for m in x:
            if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
                return False
            if m["role"] == "tool" and not (isinstance(m.get("tool_call_id"), str) and isinstance(m.get("name"), str)):
                return False
            if "tool_calls" in m and not (
                m["role"] == "assistant"
                and isinstance(m["tool_calls"], list)
                and all(isinstance(c, dict) and isinstance(c.get("function"), dict) for c in m["tool_calls"])
            ):
                return False
        return True

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> list[dict[str, Any]]:
        rng = self.np_random
        n = int(rng.integers(1, min(self.max_messages, 6) + 1))
        return [{"role": ("user", "assistant")[i % 2], "content": f"message {int(rng.integers(0, 1000))}"} for i in range(n)]

    def __repr__(self) -> str:
        return f"ChatMessages(max_messages={self.max_messages})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ChatMessages) and other.max_messages == self.max_messages
