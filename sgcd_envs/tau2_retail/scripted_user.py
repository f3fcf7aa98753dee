"""The τ²-retail scripted user: the shared offline STAND-IN for τ²'s LLM user simulator
(:mod:`sgcd_envs.tau_common.scripted_user`, whose doc lists its rules), answering questions for
retail details (email, name and zip code, user id, order id) with the task's ``known_info``.
The opening message carries ``reason_for_call`` (in retail: what the user wants done) and
``known_info``; ``task_instructions`` (in retail mostly how the user behaves) is told once, when
the agent asks something else.

Its numbers are not τ² numbers: every result it produces carries
``info["user_simulator"] == "scripted-stand-in"``.
"""

from __future__ import annotations

import re

from ..tau_common import scripted_user as _shared
from ..tau_common.scripted_user import STAND_IN_NAME, first_person

_ASK_INFO = re.compile(r"user id|order id|order number|which order|your (?:full )?name|email|zip(?: code)?|"
                       r"postal code|provide (?:your|the)", re.IGNORECASE)


class ScriptedUser(_shared.ScriptedUser):
    """Deterministic scripted user (offline stand-in, not τ²'s LLM user); see module doc."""

    ask_info = _ASK_INFO


__all__ = ["STAND_IN_NAME", "ScriptedUser", "first_person"]
