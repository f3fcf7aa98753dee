"""Shared AppWorld fixtures of tests/verl: one venv gate, one fixture-task root, one loop entry.

Without the AppWorld venv these skip with the reason; under ``SGCD_REQUIRE_APPWORLD=1`` they FAIL
(the gate and the root are tests/conftest.py's session fixtures). The root holds only sgcd-bench's own fixture task
``sgcdfixture_1`` (a stand-in built by the real AppWorld package; never AppWorld numbers). It is
built once per session (~15 s) and shared by the agent-loop, teacher and dataset tests; the
pooled env (one AppWorld worker) is closed at the end of the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def appworld_venv(appworld_python: Path) -> Path:
    """The AppWorld venv folder (the gate itself, ``appworld_python``, is in tests/conftest.py)."""
    return appworld_python.parent.parent


@pytest.fixture(scope="session")
def appworld_entry(appworld_venv: Path, fixture_root: Path):
    """The shipped ``appworld_agent`` yaml entry, pointed at the fixture split/root."""
    from _rollout_stand_ins import CONFIG_DIR
    from omegaconf import OmegaConf

    from adapters.verl import agent_loop as al

    entries = {e.name: e for e in OmegaConf.load(CONFIG_DIR / "agent_loops.yaml")}
    cfg = entries[al.APPWORLD_AGENT_NAME]
    cfg.env_kwargs.update(split="fixture", root=str(fixture_root), venv=str(appworld_venv),
                          max_steps=4, code_timeout_s=5, startup_timeout_s=120)
    yield cfg
    al.close_pooled_envs()
