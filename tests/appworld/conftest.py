"""Shared AppWorld test setup: the AppWorld venv gate and one fixture-task root per session.

Tests that need the AppWorld venv skip with the reason when it is absent, and FAIL instead when
``SGCD_REQUIRE_APPWORLD=1`` (CI sets it, so a broken setup cannot pass silently). The fixture
task is sgcd-bench's own (``sgcd_envs/appworld/fixture.py``), built into a temp folder: its
numbers are fixture numbers, never AppWorld numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sgcd_envs.appworld.errors import AppWorldVenvError
from sgcd_envs.appworld.paths import check_venv
from sgcd_envs.appworld.setup import build_fixture


@pytest.fixture(scope="session")
def appworld_python() -> Path:
    """The AppWorld venv's python, or skip (fail under SGCD_REQUIRE_APPWORLD=1)."""
    try:
        return check_venv()
    except AppWorldVenvError as err:
        if os.environ.get("SGCD_REQUIRE_APPWORLD") == "1":
            pytest.fail(f"SGCD_REQUIRE_APPWORLD=1 but the AppWorld venv is unusable: {err}")
        pytest.skip(f"AppWorld venv not available ({err})")


@pytest.fixture(scope="session")
def fixture_root(appworld_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp APPWORLD_ROOT holding only the sgcd-bench fixture task (built by the real package)."""
    root = tmp_path_factory.mktemp("appworld_fixture_root")
    task_id = build_fixture(root)
    assert task_id == "sgcdfixture_1"
    return root
