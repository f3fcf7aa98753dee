"""Writer process for the crash and concurrency tests of the result store (not a test itself).

Usage: python store_writer.py DB MODE [N]
  loop   record evaluations forever; after each commit print "done <eval_id> <n_episodes>"
  hang   record N evaluations, then start one whose 7th episode blocks *inside* the
         transaction (prints "inside <run_id>" and sleeps) so the test can SIGKILL it there
  burst  start a run, record N evaluations, finish the run, exit 0
  steps  record N training steps (printing "step <n>" after each commit), then sleep mid-run
         so the test can SIGKILL a run that never finished
Every line is flushed at once so the parent sees it before it kills us.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root

from leaderboards.store import EpisodeResult, ResultStore, TrainStep  # noqa: E402


class BlockingEpisode(EpisodeResult):
    """An EpisodeResult whose ``termination`` read blocks: the store reads it while building
    rows inside its open transaction, so a kill here lands mid-transaction."""

    def __getattribute__(self, name: str):
        if name == "termination":
            print(f"inside {BlockingEpisode.run_id}", flush=True)
            time.sleep(60)
        return object.__getattribute__(self, name)


def episodes(i: int, n: int) -> list[EpisodeResult]:
    return [
        EpisodeResult(task_id=f"t{j}", trial=i % 3, category="action" if j % 2 else "no_write",
            reward=float((i + j) % 2), db_match=bool((i + j) % 2), communicate_match=True,
            write_calls=j % 4, turns=3 + j % 5, termination="agent_stop")
        for j in range(n)
    ]


def n_for(i: int) -> int:
    return 40 + (i * 37) % 200  # varied sizes, so a count mismatch cannot hide


def main() -> None:
    db, mode = sys.argv[1], sys.argv[2]
    n_evals = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    store = ResultStore(db)
    run_id = store.start_run(method="grpo", env="sgcd_envs/Tau3Airline-v0", split="test",
                             user_simulator="scripted (stand-in)", seed=0, config={"mode": mode})
    print(f"run {run_id}", flush=True)
    if mode == "loop":
        i = 0
        while True:
            eps = episodes(i, n_for(i))
            eval_id = store.record_evaluation(run_id, i, eps, wall_s=1.0, tokens=100 * len(eps))
            print(f"done {eval_id} {len(eps)}", flush=True)
            i += 1
    elif mode == "hang":
        for i in range(n_evals):
            eps = episodes(i, n_for(i))
            eval_id = store.record_evaluation(run_id, i, eps, wall_s=1.0, tokens=10)
            print(f"done {eval_id} {len(eps)}", flush=True)
        BlockingEpisode.run_id = run_id
        eps = episodes(n_evals, 6) + [
            BlockingEpisode(task_id="blocker", trial=0, category="action", reward=0.0)
        ] + episodes(n_evals, 20)[7:]
        store.record_evaluation(run_id, n_evals, eps, wall_s=1.0, tokens=10)
        print("unreachable: the blocking evaluation committed", flush=True)
    elif mode == "burst":
        for i in range(n_evals):
            store.record_evaluation(run_id, i, episodes(i, 25), wall_s=0.5, tokens=50)
        store.finish_run(run_id, "finished")
        print("ok", flush=True)
    elif mode == "steps":
        for i in range(1, n_evals + 1):
            store.record_step(run_id, TrainStep(step=i, reward_mean=0.5, action_success=None, no_write_success=1.0,
                                                write_calls=0.5, episodes=4, updated=i % 2 == 1, loss=None,
                                                groups_kept=1, groups_drawn=2, step_s=0.1))
            print(f"step {i}", flush=True)
        time.sleep(60)
    else:
        raise SystemExit(f"unknown mode {mode!r}: choose loop, hang, burst or steps")


if __name__ == "__main__":
    main()
