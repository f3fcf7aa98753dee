"""AppWorld env pieces that need no AppWorld venv: code extraction and the clear errors."""

from __future__ import annotations

import stat
import sys

import pytest

from sgcd_envs.appworld import AppWorldDataError, AppWorldEnv, AppWorldVenvError, extract_code
from sgcd_envs.appworld.paths import check_data, check_venv


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("print(1)", "print(1)"),
        ("Let me look.\n```python\nx = 1\n```\nthen\n```py\nprint(x)\n```", "x = 1\n\nprint(x)"),
        ("Plain fence:\n```\nprint(2)\n```", "print(2)"),
        ("<think>```python\nbad()\n```</think>```python\ngood()\n```", "good()"),
        ("```python\nunterminated()", "unterminated()"),
        ({"code": "a = 1"}, "a = 1"),
        ({"role": "assistant", "content": "```python\nb = 2\n```"}, "b = 2"),
    ],
)
def test_extract_code(action, code):
    assert extract_code(action) == (code, "")


@pytest.mark.parametrize("action", ["```json\n{}\n```", {"tool_calls": []}, 42])
def test_extract_code_reports_missing_code(action):
    code, problem = extract_code(action)
    assert code is None and problem


def test_missing_venv_names_the_setup_command(tmp_path):
    with pytest.raises(AppWorldVenvError, match="sgcd-bench appworld setup"):
        check_venv(tmp_path / "nope")


def test_venv_without_appworld_is_reported(tmp_path):
    """A real interpreter without the appworld package (our own venv's python behind a shim)."""
    (tmp_path / "bin").mkdir()
    shim = tmp_path / "bin" / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(AppWorldVenvError, match="has no appworld package.*appworld setup"):
        check_venv(tmp_path)


def test_bad_split_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'test_normal'"):
        AppWorldEnv("test_nromal")


def test_no_data_root_says_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.delenv("APPWORLD_ROOT", raising=False)
    with pytest.raises(AppWorldDataError, match="APPWORLD_ROOT is not set.*appworld download data"):
        check_data(None)
    with pytest.raises(AppWorldDataError, match="does not exist.*APPWORLD_ROOT"):
        check_data(tmp_path)
    (tmp_path / "tasks").mkdir()  # the user pointed at data/ itself
    with pytest.raises(AppWorldDataError, match="pass its parent folder"):
        check_data(tmp_path)


def test_missing_split_lists_present_ones(tmp_path):
    (tmp_path / "data" / "tasks").mkdir(parents=True)
    (tmp_path / "data" / "datasets").mkdir()
    (tmp_path / "data" / "datasets" / "train.txt").write_text("abc_1\n")
    assert check_data(tmp_path, "train") == tmp_path.resolve()
    with pytest.raises(AppWorldDataError, match=r"no split 'dev'.*\['train'\]"):
        check_data(tmp_path, "dev")
