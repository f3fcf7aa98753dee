"""Reference turns of τ²-telecom tasks: what an agent that solves a task writes, turn by turn,
for warm starts (``sgcd-bench sft``) and the replay tests.

The task's reference actions in order: the agent's own as one Hermes call each, the user's as a
request to the user that names the tool (:data:`REQUESTS`, the words the scripted stand-in user
recognises: :data:`~.scripted_user.REQUEST_WORDS`), then ``###STOP###``. Replayed through the env
with the stand-in user, who performs each requested reference action, they score 1 on every task
(``tests/envs/test_tau2_telecom.py``).
"""

from __future__ import annotations

from ..core import AGENT_STOP_TOKEN, ToolCall
from .tasks import Task, load_tasks

REQUESTS: dict[str, str] = {
    "set_network_mode_preference": "Please open your network settings and set the network mode preference to {mode}.",
    "toggle_airplane_mode": "Please toggle airplane mode on your phone.",
    "reseat_sim_card": "Please take out your SIM card and re-insert it.",
    "toggle_data": "Please toggle your mobile data.",
    "toggle_roaming": "Please toggle data roaming in your phone's settings.",
    "toggle_data_saver_mode": "Please toggle data saver mode.",
    "reset_apn_settings": "Please reset your APN settings to the defaults.",
    "toggle_wifi_calling": "Please toggle Wi-Fi calling.",
    "disconnect_vpn": "Please disconnect your VPN.",
    "grant_app_permission": "Please grant the {app_name} app the {permission} permission.",
    "reboot_device": "Please restart your phone.",
    "make_payment": "Please make the payment for the request on your phone.",
}
"""The agent's request for each user tool the reference actions use (arguments filled in)."""


def user_request(call: ToolCall) -> str:
    """The agent's words asking the user to make ``call`` on their phone."""
    template = REQUESTS.get(call.name)
    if template is None:
        return f"Please {call.name.replace('_', ' ')} on your phone."
    return template.format(**{k: v for k, v in call.arguments.items() if isinstance(v, (str, int, float))})


def task_turns(task: Task) -> list[str]:
    """The assistant texts that solve ``task`` with the scripted stand-in user."""
    turns = [a.call.to_hermes() if a.requestor == "assistant" else user_request(a.call) for a in task.actions]
    return [*turns, AGENT_STOP_TOKEN]


def reference_turns(task_id: str, split: str = "train") -> list[str]:
    """The assistant texts that solve τ² telecom task ``task_id`` of ``split``."""
    task = next((t for t in load_tasks(split) if t.id == str(task_id)), None)
    if task is None:
        raise ValueError(f"τ² telecom task {task_id!r} is not in split {split!r}")
    return task_turns(task)
