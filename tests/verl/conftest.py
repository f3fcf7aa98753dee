"""Shared AppWorld fixtures of tests/verl: one venv gate, one fixture-task root, one loop entry.

Without the AppWorld venv these skip with the reason; under ``SGCD_REQUIRE_APPWORLD=1`` they FAIL
(as tests/appworld/conftest.py). The root holds only sgcd-bench's own fixture task
``sgcdfixture_1`` (a stand-in built by the real AppWorld package; never AppWorld numbers). It is
built once per session (~15 s) and shared by the agent-loop, teacher and dataset tests; the
pooled env (one AppWorld worker) is closed at the end of the session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sgcd_envs.appworld.errors import AppWorldVenvError
from sgcd_envs.appworld.fixture import FIXTURE_TASK_ID
from sgcd_envs.appworld.paths import check_venv
from sgcd_envs.appworld.setup import build_fixture


@pytest.fixture(scope="session")
def appworld_venv() -> Path:
    """The AppWorld venv folder, or skip (fail under SGCD_REQUIRE_APPWORLD=1)."""
    try:
        return check_venv().parent.parent
    except AppWorldVenvError as err:
        if os.environ.get("SGCD_REQUIRE_APPWORLD") == "1":
            pytest.fail(f"SGCD_REQUIRE_APPWORLD=1 but the AppWorld venv is unusable: {err}")
        pytest.skip(f"AppWorld venv not available ({err})")


@pytest.fixture(scope="session")
def fixture_root(appworld_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp APPWORLD_ROOT holding only the fixture task, split ``fixture``."""
    root = tmp_path_factory.mktemp("appworld_fixture_root")
    assert build_fixture(root) == FIXTURE_TASK_ID
    return root


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
