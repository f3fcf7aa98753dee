"""The τ³-airline scripted user: the shared offline STAND-IN for τ³'s LLM user simulator
(:mod:`sgcd_envs.tau_common.scripted_user`, whose doc lists its rules), answering questions for
airline details (user id, reservation, name, email, date of birth) with the task's ``known_info``.

Its numbers are not τ³ numbers: every result it produces carries
``info["user_simulator"] == "scripted-stand-in"``.
"""

from __future__ import annotations

import re

from ..tau_common import scripted_user as _shared
from ..tau_common.scripted_user import STAND_IN_NAME, first_person

_ASK_INFO = re.compile(r"user id|reservation id|reservation number|your (?:full )?name|email|date of birth|"
                       r"which reservation|provide (?:your|the)", re.IGNORECASE)


class ScriptedUser(_shared.ScriptedUser):
    """Deterministic scripted user (offline stand-in, not τ³'s LLM user); see module doc."""

    ask_info = _ASK_INFO


__all__ = ["STAND_IN_NAME", "ScriptedUser", "first_person"]
