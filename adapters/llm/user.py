"""LLM user simulator: an OpenAI-compatible model role-plays the customer of a τ³ task.

Implements the env's ``UserSimulator`` protocol (docs/architecture.md):
``reset(task, seed) -> str`` gives the first user message and ``respond(messages)`` the
next one; a reply containing ``###STOP###``, ``###TRANSFER###`` or ``###OUT-OF-SCOPE###`` ends
the episode. The system prompt is our own wording built from the task's
``user_scenario.instructions`` (``reason_for_call``, ``known_info``, ``unknown_info``,
``task_instructions``, ``domain``; τ³-bench task format, sierra-research/tau2-bench).

Roles are flipped for the simulator: the agent's messages are sent as ``user`` and the
simulated customer's earlier messages as ``assistant``. The agent's tool calls, its tool
results and tool-call markup are never shown to the simulated customer.

Dual control (τ²-telecom: the customer has tools of their own, on their phone): the env calls
:meth:`LLMUser.bind_tools` once with the user's OpenAI tool schemas. From then on each request
of ``respond`` sends them as the request's ``tools`` (OpenAI tool calling), and the system
prompt tells the customer to use them when the agent asks and to report what they show. When
the model answers with tool calls, ``respond`` returns the OpenAI-style message
``{"role": "user", "content": ..., "tool_calls": [...]}``; the env runs the calls on the
user's side and calls ``respond`` again with the conversation now ending in their results
(``"requestor": "user"``), until the model answers with a text. In the simulator's view the
customer's own calls are ``assistant`` messages with ``tool_calls``, each followed by its
``tool`` results (as the OpenAI format wants). Without bound tools nothing of this applies.

Failures are defined, counted and never crash a run: an agent turn with no text for the
customer gets :data:`NO_TEXT_REPLY` (counted in ``stats.empty_agent_turns``, no request made);
a request that still fails after the client's retries raises :class:`LLMError`, which the env
(``LLMUser.error_types``) turns into the episode end ``user_error`` (counted in
``stats.failures`` by reason).
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .client import ChatClient, LLMError, checked_tools, short_reason

__all__ = [
    "END_MARKERS",
    "NO_TEXT_REPLY",
    "OUT_OF_SCOPE",
    "STOP",
    "TRANSFER",
    "USER_SIDE",
    "USER_TOOLS_GUIDELINE",
    "LLMUser",
    "UserStats",
    "scenario_fields",
    "simulator_messages",
    "user_system_prompt",
]

STOP = "###STOP###"
TRANSFER = "###TRANSFER###"
OUT_OF_SCOPE = "###OUT-OF-SCOPE###"
END_MARKERS = (STOP, TRANSFER, OUT_OF_SCOPE)

#: The agent's opening line the simulator answers first (the env's conversation starts with
#: the customer's message, so this greeting is only part of the simulator's view).
DEFAULT_GREETING = "Hi! How can I help you today?"

_FIELDS = ("domain", "reason_for_call", "known_info", "unknown_info", "task_instructions")
TRANSFER_TOOL = "transfer_to_human_agents"
#: What the customer is shown when the agent calls :data:`TRANSFER_TOOL` (the call itself is not).
TRANSFER_NOTE = "[The agent has transferred you to a human agent.]"
_TOOL_BLOCK = re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
#: A bare JSON call with more brackets than this is not decoded (bounds the json module's recursion).
_MAX_BARE_CALL_BRACKETS = 64

#: ``message["requestor"]`` of a dual-control user's own tool calls and results in the env's
#: conversation (``sgcd_envs.core.USER_SIDE``; not imported: this package stays free of the envs).
USER_SIDE = "user"

NO_TEXT_REPLY = "Sorry, I did not get any message from you. Could you please continue?"
"""The customer's fixed reply to an agent turn with no text for the customer (empty,
whitespace only, only ``<think>``, only tool-call markup); no model request is made."""


@dataclass
class UserStats:
    """What the LLM user had to paper over, for the run's summary (one object may be shared by
    the users of many episodes).

    ``empty_agent_turns``: agent turns answered with :data:`NO_TEXT_REPLY`; ``failures``:
    requests that failed after the client's retries (each ended its episode as
    ``user_error``), by short reason in ``failure_reasons``; ``last_error``: the last failure's
    full message.
    """

    empty_agent_turns: int = 0
    failures: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None

    def summary(self) -> str:
        """One line, e.g. ``"2 empty agent turns nudged, 1 failure (HTTP 500: ... ×1)"``."""
        reasons = ", ".join(f"{r} ×{n}" for r, n in self.failure_reasons.most_common())
        return (f"{_count(self.empty_agent_turns, 'empty agent turn')} nudged, {_count(self.failures, 'failure')}"
                + (f" ({reasons})" if reasons else ""))


def _count(n: int, noun: str) -> str:
    """``"1 failure"``, ``"2 failures"``."""
    return f"{n} {noun}{'s' * (n != 1)}"


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def scenario_fields(task: Any) -> dict[str, str | None]:
    """The user-scenario fields of a τ³ task.

    Accepts ``sgcd_envs.tau3_airline.Task`` (its ``instructions`` dict) or upstream's raw task
    (dict or object with ``user_scenario.instructions`` and ``user_scenario.persona``). The
    instructions are a mapping/object with the five fields, or a plain string (which becomes
    ``task_instructions``).

    Raises:
        ValueError: the task has no user-scenario instructions.
    """
    scenario = _get(task, "user_scenario")
    instructions = _get(scenario, "instructions") if scenario is not None else None
    if instructions is None:
        instructions = _get(task, "instructions")
    if instructions is None:
        raise ValueError(
            f"task {_get(task, 'id')!r} has no user-scenario instructions (task.instructions or "
            "task.user_scenario.instructions); the LLM user needs "
            "a τ³-style user scenario (reason_for_call, known_info, task_instructions, ...)."
        )
    if isinstance(instructions, str):
        out: dict[str, str | None] = {f: None for f in _FIELDS}
        out["task_instructions"] = instructions
    else:
        out = {f: _get(instructions, f) for f in _FIELDS}
    out["persona"] = _get(scenario, "persona") if scenario is not None else None
    return {k: (str(v).strip() or None) if v is not None else None for k, v in out.items()}


USER_TOOLS_GUIDELINE = (
    "- You have tools that act on your own phone or device. When the agent asks you to check or "
    "change something on it, do it yourself with those tools, and tell the agent only what the "
    "tool results actually show; never guess or make up what your device says."
)
"""The guideline added to the system prompt of a dual-control user (tools bound)."""


def user_system_prompt(task: Any, *, user_tools: bool = False) -> str:
    """Our system prompt that makes a chat model play the customer of ``task``; with
    ``user_tools`` (dual control) it adds :data:`USER_TOOLS_GUIDELINE`."""
    f = scenario_fields(task)
    domain = f["domain"] or "customer-service"
    parts = [
        f"You are role-playing a customer who is chatting with a {domain} customer-service "
        "agent. The agent is an AI assistant; you are the human customer. Stay in this role "
        "for the whole conversation and never act as the agent.",
        "",
        "YOUR SCENARIO",
    ]
    labels = (
        ("persona", "Who you are"),
        ("reason_for_call", "Why you are getting in touch"),
        ("known_info", "What you know"),
        ("unknown_info", "What you do not know"),
        ("task_instructions", "How to behave"),
    )
    for name, label in labels:
        if f[name]:
            parts += [f"{label}:", f[name], ""]
    parts += [
        "GUIDELINES",
        "- Write only the customer's next chat message: short and natural, no role labels, "
        "no descriptions of actions.",
        "- Share details (names, ids, dates, numbers) only when the agent needs them, and only "
        "details from your scenario. Never invent ids, numbers or facts; if asked for "
        "something you do not know, say so.",
        *([USER_TOOLS_GUIDELINE] if user_tools else []),
        "- Keep to the behaviour described in your scenario even if the agent pushes back.",
        "- Do not do the agent's work for it and do not suggest tools or system actions.",
        f"- When your request has been dealt with, or the agent has made clear it cannot be, "
        f"and you have nothing left to ask, reply with {STOP} alone.",
        f"- If the agent hands you over to a human agent, reply with {TRANSFER} alone.",
        f"- If the agent needs something your scenario gives you no basis to answer and the "
        f"conversation cannot go on without it, reply with {OUT_OF_SCOPE} alone.",
    ]
    return "\n".join(parts)


def _agent_visible_text(message: Mapping[str, Any]) -> str:
    """What the customer sees of an agent message: its text without tool-call markup.

    A call of :data:`TRANSFER_TOOL` adds :data:`TRANSFER_NOTE` (a real customer notices the
    hand-over); other calls are invisible.
    """
    content = message.get("content") or ""
    if not isinstance(content, str):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    content = _TOOL_BLOCK.sub("", _THINK_BLOCK.sub("", content)).strip()
    if _is_bare_call(content):
        content = ""
    names = [(c.get("function") or c).get("name") for c in message.get("tool_calls") or []
             if isinstance(c, Mapping)]
    if TRANSFER_TOOL in names:
        content = f"{content}\n\n{TRANSFER_NOTE}".strip()
    return content


def _is_bare_call(text: str) -> bool:
    """Whether ``text`` is one bare JSON tool call (decoded only when few brackets make it
    safe: the json module recurses once per nesting level)."""
    if not text.startswith("{") or text.count("{") + text.count("[") > _MAX_BARE_CALL_BRACKETS:
        return False
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and "name" in obj and "arguments" in obj


def simulator_messages(
    system_prompt: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    greeting: str = DEFAULT_GREETING,
    user_tools: bool = False,
) -> list[dict[str, Any]]:
    """The simulator's view of the conversation, roles flipped.

    agent (``assistant``) → ``user``; customer (``user``) → ``assistant``; the agent's
    ``tool`` messages, ``system`` messages and tool-call markup are dropped (a transfer call
    shows as :data:`TRANSFER_NOTE`); consecutive text messages of one role are joined with a
    blank line (templates that need alternating roles). ``greeting`` is put first as the
    agent's opening line unless the conversation already opens with the agent.

    With ``user_tools`` (dual control) the customer's own tool use (``"requestor": "user"``)
    is kept: its call message becomes an ``assistant`` message with ``tool_calls`` and its
    results ``tool`` messages with their ``tool_call_id``. A call message takes in a customer
    text right before it, but nothing is ever joined onto it, so its ``tool`` messages follow
    it directly, as the OpenAI format requires.
    """
    flipped = [m for m in (_flipped(msg, user_tools) for msg in messages) if m is not None]
    if not flipped or flipped[0]["role"] != "user":
        flipped.insert(0, {"role": "user", "content": greeting})
    out: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    for message in flipped:
        _add_joined(out, message)
    return out


def _flipped(msg: Mapping[str, Any], user_tools: bool) -> dict[str, Any] | None:
    """One env message as the simulator sees it, or None when it is hidden from the customer."""
    role = msg.get("role")
    if user_tools and msg.get("requestor") == USER_SIDE:
        return _own_tool_message(msg)
    if role == "assistant":
        text = _agent_visible_text(msg)
        return {"role": "user", "content": text} if text else None
    if role == "user":
        return {"role": "assistant", "content": _text(msg)}
    return None


def _text(msg: Mapping[str, Any]) -> str:
    """A message's content as a string (None is ``""``)."""
    content = msg.get("content") or ""
    return content if isinstance(content, str) else str(content)


def _own_tool_message(msg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The customer's own call message (→ ``assistant`` with ``tool_calls``) or one of its
    results (→ ``tool``), in the OpenAI wire form."""
    if msg.get("role") == "tool":
        return {"role": "tool", "tool_call_id": str(msg.get("tool_call_id") or ""), "content": _text(msg)}
    if msg.get("role") != "user":
        return None
    calls = [_wire_call(c) for c in msg.get("tool_calls") or [] if isinstance(c, Mapping)]
    out: dict[str, Any] = {"role": "assistant", "content": _text(msg)}
    if calls:
        out["tool_calls"] = calls
    return out


def _wire_call(call: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded tool call in the canonical OpenAI form (``arguments`` a JSON string)."""
    function = call.get("function") or {}
    arguments = function.get("arguments", "{}")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": str(call.get("id") or ""), "type": "function",
            "function": {"name": str(function.get("name") or ""), "arguments": arguments}}


def _add_joined(out: list[dict[str, Any]], message: dict[str, Any]) -> None:
    """Append ``message`` to the view, joining it onto the previous message of its role when
    that one is plain text (never onto a tool-call message, never a ``tool`` message)."""
    prev = out[-1]
    if prev["role"] != message["role"] or message["role"] not in ("user", "assistant") or "tool_calls" in prev:
        out.append(message)
    elif "tool_calls" in message:  # the customer's text, then its calls: one message
        out[-1] = {**message, "content": "\n\n".join(t for t in (prev["content"], message["content"]) if t)}
    else:
        prev["content"] += "\n\n" + message["content"]


class LLMUser:
    """User simulator backed by an OpenAI-compatible chat model (``UserSimulator`` protocol).

    ``name`` (``"llm:<model>"``) labels results, as the env's protocol asks; ``error_types``
    tells the env which exceptions mean "the simulator failed" (it then ends the episode as
    ``user_error`` instead of raising). ``bind_tools`` makes it a dual-control user (see the
    module docstring); without it, it never calls a tool.

    Args:
        client: the chat client (its endpoint's temperature applies; a cache makes replays
            of identical conversations free and deterministic; its retry settings apply to
            every request).
        greeting: the agent's opening line shown to the simulator before its first message.
        send_seed: send the episode seed with each request (servers that support ``seed``
            then sample reproducibly; it is also part of the cache key).
        stats: counters to add to (share one between the users of a run); default a fresh one.
    """

    error_types: ClassVar[tuple[type[BaseException], ...]] = (LLMError,)

    def __init__(
        self, client: ChatClient, *, greeting: str = DEFAULT_GREETING, send_seed: bool = True,
        stats: UserStats | None = None,
    ) -> None:
        self.client = client
        self.greeting = greeting
        self.send_seed = send_seed
        self.stats = stats if stats is not None else UserStats()
        self.name = f"llm:{client.endpoint.model}"
        self._system: str | None = None
        self._seed: int | None = None
        self._tools: list[dict[str, Any]] | None = None

    @property
    def tools(self) -> list[dict[str, Any]] | None:
        """The bound user tools' OpenAI schemas (a copy), or None when none are bound."""
        return copy.deepcopy(self._tools)

    def bind_tools(self, schemas: Sequence[Mapping[str, Any]]) -> None:
        """Take the user's own tools (dual control; the env calls this once at construction):
        their OpenAI function schemas are copied and sent with every request of ``respond``.
        An empty list binds nothing.

        Raises:
            ValueError: a schema is not an OpenAI function schema.
        """
        self._tools = checked_tools(list(schemas))

    def reset(self, task: Any, seed: int | None = None) -> str:
        """Start an episode for ``task``; returns the customer's first message (always a text:
        no tools are offered for it).

        Raises:
            LLMError: the request failed after the client's retries, or the answer was empty
                (counted in ``stats``).
        """
        self._system = user_system_prompt(task, user_tools=self._tools is not None)
        self._seed = seed
        text, _ = self._ask(simulator_messages(self._system, [], greeting=self.greeting), tools=None)
        return text

    def respond(self, messages: Sequence[Mapping[str, Any]]) -> str | dict[str, Any]:
        """The customer's reply to the conversation so far (env's view, roles unflipped).

        The conversation ends with an agent (``assistant``) message or, with bound tools, with
        the results of the customer's own tool calls (``"requestor": "user"``). With bound tools
        the reply may be a tool-call message ``{"role": "user", "content": text or "",
        "tool_calls": [...]}`` (the ids the server gave, or ``usercall_<n>_<k>`` where it gave
        none) for the env to run; otherwise it is the customer's text.

        An agent turn with nothing for the customer to read (empty, whitespace, ``<think>`` or
        tool-call markup only) gets :data:`NO_TEXT_REPLY` without a request (counted in
        ``stats.empty_agent_turns``).

        Raises:
            RuntimeError: ``reset`` was not called.
            ValueError: the conversation does not end as described above.
            LLMError: the request failed after the client's retries, or the answer was empty
                (counted in ``stats``).
        """
        if self._system is None:
            raise RuntimeError("LLMUser.respond() called before reset(task, seed).")
        after_own_tools = self._ends_with_own_results(messages)
        if not after_own_tools and (not messages or messages[-1].get("role") != "assistant"):
            also = " or the user's own tool results" if self._tools is not None else ""
            raise ValueError(f"LLMUser.respond(): the conversation must end with an agent message{also}.")
        view = simulator_messages(self._system, messages, greeting=self.greeting,
                                  user_tools=self._tools is not None)
        if not after_own_tools and view[-1]["role"] != "user":  # the agent said nothing new to the customer
            self.stats.empty_agent_turns += 1
            return NO_TEXT_REPLY
        text, calls = self._ask(view, tools=self._tools)
        return _call_message(text, calls, id_base=len(messages)) if calls else text

    def _ends_with_own_results(self, messages: Sequence[Mapping[str, Any]]) -> bool:
        """Whether a dual-control user is asked again after its own tool calls ran."""
        if self._tools is None or not messages:
            return False
        last = messages[-1]
        return last.get("role") == "tool" and last.get("requestor") == USER_SIDE

    def _ask(self, view: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
             ) -> tuple[str, tuple[dict[str, Any], ...]]:
        """The simulator model's next customer message for ``view``: its text (stripped) and,
        when ``tools`` were offered, its tool calls; an answer with neither is an LLMError.
        Failures are counted in ``stats``."""
        seed = self._seed if self.send_seed else None
        try:
            answer = self.client.request(view, seed=seed, tools=tools)
            text = answer.text.strip()
            calls = answer.tool_calls if tools is not None else ()
            if not text and not calls:
                raise LLMError(f"LLM user ({self.client.endpoint.model}) returned an empty message.",
                               "empty answer")
        except LLMError as err:
            self.stats.failures += 1
            self.stats.failure_reasons[short_reason(err.reason)] += 1
            self.stats.last_error = str(err)
            raise
        return text, calls


def _call_message(text: str, calls: Sequence[Mapping[str, Any]], id_base: int) -> dict[str, Any]:
    """The customer's tool-call message for the env. A call the server gave no id (or an id
    already used in this message) gets ``usercall_<id_base>_<k>``: deterministic, and unique in
    the episode because ``id_base`` is the conversation's length, which grows every round."""
    seen: set[str] = set()
    out = []
    for k, call in enumerate(calls):
        call_id = call.get("id") or ""
        if not call_id or call_id in seen:
            call_id = f"usercall_{id_base}_{k}"
        seen.add(call_id)
        out.append({"id": call_id, "type": "function", "function": dict(call["function"])})
    return {"role": "user", "content": text, "tool_calls": out}
