"""AppWorld dataset rows for verl, from a real APPWORLD_ROOT split (the fixture root).

The root holds only sgcd-bench's fixture task ``sgcdfixture_1`` (a stand-in, never AppWorld
numbers); its task ids are read by AppWorld's own ``load_task_ids`` in the env's worker. Skips
without the AppWorld venv; fails under ``SGCD_REQUIRE_APPWORLD=1`` (conftest.py).
"""

from __future__ import annotations

import pandas as pd
import pytest
from verl_required import verl  # noqa: F401  (skip / fail guard)

from adapters.verl import agent_loop as al
from adapters.verl import dataset
from sgcd_envs.appworld import AppWorldDataError
from sgcd_envs.appworld.fixture import FIXTURE_TASK_ID


def test_rows_from_the_fixture_split_round_trip_through_parquet(fixture_root, appworld_venv, tmp_path) -> None:
    (path,) = dataset.write_appworld(tmp_path, ["fixture"], fixture_root, agent_name=al.APPWORLD_AGENT_NAME,
                                     venv=appworld_venv)
    assert path.name == "appworld_fixture.parquet"
    rows = pd.read_parquet(path).to_dict("records")
    assert len(rows) == 1
    (row,) = rows
    assert row["agent_name"] == "appworld_agent" and row["data_source"] == al.APPWORLD_ENV_ID
    assert row["extra_info"]["task_id"] == FIXTURE_TASK_ID and row["extra_info"]["split"] == "fixture"
    assert al._task_id(row) == FIXTURE_TASK_ID  # what the agent loop reads from verl's row kwargs
    assert next(iter(row["prompt"]))["role"] == "user"


def test_default_agent_loop_per_split() -> None:
    assert dataset.APPWORLD_AGENT_BY_SPLIT == {"train": "appworld_agent", "dev": "appworld_dev_agent"}
    with pytest.raises(ValueError, match="pass agent_name= for a loop whose env_kwargs.split is 'fixture'"):
        dataset.appworld_rows("fixture", "/nonexistent")


def test_clear_errors_without_data(fixture_root, appworld_venv, tmp_path, monkeypatch) -> None:
    with pytest.raises(AppWorldDataError, match=r"No AppWorld data at .*appworld download data"):
        dataset.appworld_rows("train", tmp_path, venv=appworld_venv)
    with pytest.raises(AppWorldDataError, match=r"has no split 'dev'.*present: \['fixture'\]"):
        dataset.appworld_rows("dev", fixture_root, venv=appworld_venv)
    monkeypatch.delenv("APPWORLD_ROOT", raising=False)
    with pytest.raises(AppWorldDataError, match="APPWORLD_ROOT is not set"):
        dataset.appworld_rows("train", venv=appworld_venv)
    with pytest.raises(ValueError, match="Unknown AppWorld split 'trian'.*Did you mean 'train'"):
        dataset.appworld_rows("trian", fixture_root, agent_name="appworld_agent", venv=appworld_venv)


def test_tau3_rows_unchanged() -> None:
    rows = dataset.rows("train")
    assert rows and {r["agent_name"] for r in rows} == {al.AGENT_NAME}
    assert all(r["data_source"] == al.ENV_ID and r["extra_info"]["task_id"] for r in rows)
