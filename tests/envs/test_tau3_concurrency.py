"""τ³-airline's per-process caches hand every thread the same objects, as verl's agent loop needs.

verl runs env calls in executor threads: several episodes build their envs and score them at the
same time. The base DB (and the gold states built on it) must then be computed once per data
folder: a second base DB would make ``states_equal`` refuse to compare (``ValueError``).

Each test starts from a cold cache without clearing it: it loads a fresh copy of the pinned data
folder (in ``tmp_path``), a key no earlier test has loaded. Clearing the caches instead would hand
the rest of the session a second base DB next to the one other modules' fixtures hold.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import sgcd_envs  # noqa: F401  (registers the ids)
from sgcd_envs.tau3_airline import data, get_task, gold_state

THREADS = 8


@pytest.fixture
def cold_data_dir(tmp_path: Path) -> Path:
    """A byte-identical copy of the pinned airline folder: nothing is cached for it yet."""
    target = tmp_path / "airline"
    shutil.copytree(data.data_dir(), target)
    return data.data_dir(target)


def _all_at_once(fn: Callable[[int], Any], n: int = THREADS) -> list[Any]:
    """``fn(0..n-1)`` in n threads released together by a barrier; the results in order."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_first_calls_share_one_base_db(cold_data_dir: Path) -> None:
    dbs = _all_at_once(lambda _: data.base_db(cold_data_dir))
    assert len({id(db) for db in dbs}) == 1
    assert data.base_db(cold_data_dir) is dbs[0]


def test_concurrent_first_calls_share_one_gold_state(cold_data_dir: Path) -> None:
    task = get_task("21", cold_data_dir)
    golds = _all_at_once(lambda _: gold_state(task, cold_data_dir))
    assert len({id(state) for state, _ in golds}) == 1
    assert golds[0][0].base is data.base_db(cold_data_dir)


def _reference_episode(task_id: str, data_dir: Path) -> dict[str, Any]:
    """Build a τ³ env and play the task's reference actions; the final step's info."""
    env = gym.make("sgcd_envs/Tau3Airline-v0", split="all", data_dir=data_dir)
    task = get_task(task_id, data_dir)
    env.reset(seed=0, options={"task_id": task_id})
    for a in task.actions:
        env.step({"name": a.name, "arguments": a.arguments})
    *_, info = env.step(" ".join(task.communicate_info) + " ###STOP###")
    env.close()
    return info


def test_envs_built_and_scored_concurrently_from_a_cold_cache(cold_data_dir: Path) -> None:
    """Several envs built at once on a cold cache, as verl's executor threads do, all score 1.0."""
    task_ids = ["21", "21", "7", "7", "12", "12"]
    infos = _all_at_once(lambda i: _reference_episode(task_ids[i], cold_data_dir), n=len(task_ids))
    assert [info["reward"] for info in infos] == [1.0] * len(task_ids)
    assert all(info["db_match"] for info in infos)
