"""The τ²-telecom scripted user: an offline STAND-IN for τ²'s LLM user simulator, for dual control.

Its numbers are not τ² numbers: every result it produces carries
``info["user_simulator"] == "scripted-stand-in"``.

It keeps the shared stand-in's rules (:mod:`sgcd_envs.tau_common.scripted_user`: the opening
message from ``reason_for_call`` and ``known_info``, stop, transfer, known details, confirmations,
``task_instructions`` once) and adds the one thing a telecom user must do: act on their own
phone. Before those rules, on each agent message:

1. the message asks for a change (an action verb: toggle, turn, set, reset, restart, grant, ...,
   :data:`ACTION_VERBS`) and names a user write tool (its :data:`REQUEST_WORDS`, e.g.
   "airplane mode" for ``toggle_airplane_mode``): if the tool is among the task's **pending
   user-side reference actions**, the user calls it with the reference arguments (one call per
   named tool and message, the earliest pending one; in reference order), as an OpenAI
   tool-call message the env runs on the user's side; if none is pending, the user answers
   :data:`NOT_ABLE` and changes nothing (an LLM user would try, and could break the phone
   further; the stand-in only replays the reference);
2. else the message names a user **read** tool that takes no arguments (status bar, speed test,
   SIM status, ...): the user calls it;
3. when the env hands back the results, the user tells the agent what its phone said:
   ``"I did that. <tool>: <result> ..."``.

So a task is solvable with it exactly when the agent asks for the user's reference actions,
names them recognisably and does its own part.
It never decides on its own, negotiates or checks whether a toggle is already in the wanted
position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..core import USER_SIDE, ToolCall
from ..tau_common import scripted_user as _shared
from ..tau_common.scripted_user import STAND_IN_NAME, first_person

_ASK_INFO = re.compile(r"phone number|your (?:full )?name|date of birth|\bdob\b|customer id|account|"
                       r"provide (?:your|the)|where are you|your location", re.IGNORECASE)

REQUEST_WORDS: dict[str, str] = {
    "check_status_bar": r"status bar",
    "check_network_status": r"network status|signal strength",
    "check_network_mode_preference": r"network mode",
    "set_network_mode_preference": r"network mode",
    "run_speed_test": r"speed test",
    "toggle_airplane_mode": r"airplane mode|flight mode",
    "check_sim_status": r"sim (?:card )?status",
    "reseat_sim_card": r"re-?seat|re-?insert",
    "toggle_data": r"mobile data|cellular data",
    "toggle_roaming": r"roaming",
    "check_data_restriction_status": r"data saver|data restriction",
    "toggle_data_saver_mode": r"data saver",
    "check_apn_settings": r"\bapn\b|access point",
    "reset_apn_settings": r"\bapn\b|access point",
    "check_wifi_status": r"wi-?fi (?:status|connection)",
    "toggle_wifi": r"wi-?fi(?! calling)",
    "check_wifi_calling_status": r"wi-?fi calling",
    "toggle_wifi_calling": r"wi-?fi calling",
    "check_vpn_status": r"\bvpn\b",
    "connect_vpn": r"\bvpn\b",
    "disconnect_vpn": r"\bvpn\b",
    "check_installed_apps": r"installed apps",
    "grant_app_permission": r"permission",
    "can_send_mms": r"\bmms\b|picture message",
    "reboot_device": r"restart|reboot",
    "check_payment_request": r"payment request",
    "make_payment": r"\bpay\b|payment",
}
"""What in an agent message names each user tool (case-insensitive regexes)."""

_NAMES = {tool: re.compile(words, re.IGNORECASE) for tool, words in REQUEST_WORDS.items()}

ACTION_VERBS = re.compile(r"\b(?:toggle|turn|switch|set|change|reset|restart|reboot|re-?seat|re-?insert|take out|"
                          r"enable|disable|grant|allow|connect|disconnect|pay|make)\b", re.IGNORECASE)
"""Words that make a message a request for a change on the phone (else it can only ask for reads)."""
NOT_ABLE = "I'm not sure how to do that on my phone."


def names_tool(text: str, tool: str) -> bool:
    """Whether an agent message asks for ``tool`` (see :data:`REQUEST_WORDS`)."""
    pattern = _NAMES.get(tool)
    return pattern is not None and pattern.search(text) is not None


class ScriptedUser(_shared.ScriptedUser):
    """Deterministic scripted telecom user (offline stand-in, not τ²'s LLM user); see module doc."""

    ask_info = _ASK_INFO

    def __init__(self, max_user_turns: int = 10) -> None:
        super().__init__(max_user_turns)
        self._pending: list[ToolCall] = []
        self._reads: tuple[str, ...] = ()
        self._calls = 0

    def bind_tools(self, schemas: list[dict[str, Any]]) -> None:
        """The env's user tools: the argument-free reads are the ones this user runs when named."""
        self._reads = tuple(s["function"]["name"] for s in schemas
                            if not s["function"]["parameters"].get("required")
                            and not s["function"]["name"].startswith(("toggle_", "set_", "reset_", "reseat_",
                                                                      "connect_", "disconnect_", "grant_", "make_",
                                                                      "reboot_")))

    def reset(self, task: Any, seed: int | None = None) -> str:
        self._pending = [a.call for a in task.actions if a.requestor == "user"]
        self._calls = 0
        return super().reset(task, seed)

    def respond(self, messages: list[dict[str, Any]]) -> str | dict[str, Any]:
        last = messages[-1] if messages else {}
        if last.get("requestor") == USER_SIDE:  # the env ran this user's calls: report the results
            return _report(messages)
        text = last.get("content") or ""
        calls = self._requested_calls(text)
        if calls:
            self._calls += 1
            return {"role": "user", "content": "",
                    "tool_calls": [ToolCall(c.name, dict(c.arguments), f"user_call_{self._calls}_{k}").to_openai()
                                   for k, c in enumerate(calls)]}
        if self._asks_for_a_change(text):
            return NOT_ABLE
        return super().respond(messages)

    def _requested_calls(self, text: str) -> list[ToolCall]:
        """For a change request, the pending reference actions it names (the earliest of each
        tool, in reference order; taken off the pending list); else the argument-free reads it names."""
        if not text:
            return []
        if ACTION_VERBS.search(text):
            chosen: list[int] = []
            for i, call in enumerate(self._pending):
                if names_tool(text, call.name) and all(self._pending[j].name != call.name for j in chosen):
                    chosen.append(i)
            calls = [self._pending[i] for i in chosen]
            self._pending = [c for i, c in enumerate(self._pending) if i not in chosen]
            if calls or self._asks_for_a_change(text):
                return calls
        return [ToolCall(name, {}, name) for name in self._reads if names_tool(text, name)]

    def _asks_for_a_change(self, text: str) -> bool:
        """A change request naming a user write tool."""
        return bool(ACTION_VERBS.search(text)) and any(names_tool(text, tool) for tool in REQUEST_WORDS
                                                        if tool not in self._reads)


def _report(messages: list[dict[str, Any]]) -> str:
    """The user's words on the results of its last tool-call message."""
    results: list[Mapping[str, Any]] = []
    for m in reversed(messages):
        if m.get("requestor") != USER_SIDE or m["role"] != "tool":
            break
        results.append(m)
    lines = [f"{m['name']}: {m['content']}" for m in reversed(results)]
    return "I did that. " + " ".join(lines) if lines else "I did that."


__all__ = ["ACTION_VERBS", "NOT_ABLE", "REQUEST_WORDS", "STAND_IN_NAME", "ScriptedUser", "first_person", "names_tool"]
