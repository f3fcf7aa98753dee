"""Write τ³-airline task lists as the parquet files verl's RLHFDataset reads.

``python -m adapters.verl.dataset OUT_DIR`` → ``OUT_DIR/tau3_airline_{train,test}.parquet``.
Each row selects our agent loop (``agent_name: tau3_airline_agent``) and a task
(``extra_info.task_id``); the agent loop builds the real prompt from the env, so ``prompt`` holds
only a short placeholder user message (verl's dataset needs one to compute lengths).
"""

from __future__ import annotations

import sys
from pathlib import Path

from adapters.verl.agent_loop import AGENT_NAME

DATA_SOURCE = "sgcd_envs/Tau3Airline-v0"


def rows(split: str) -> list[dict]:
    """One dataset row per task of ``split`` (train / test / all)."""
    from sgcd_envs.tau3_airline.tasks import load_tasks

    return [
        {
            "data_source": DATA_SOURCE,
            "agent_name": AGENT_NAME,
            "prompt": [{"role": "user", "content": f"tau3-airline task {t.id}"}],
            "reward_model": {"style": "env", "ground_truth": ""},
            "extra_info": {"task_id": t.id, "split": t.split, "index": i},
        }
        for i, t in enumerate(load_tasks(split))
    ]


def write(out_dir: str | Path) -> list[Path]:
    """Write the train and test parquet files; return their paths."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in ("train", "test"):
        path = out / f"tau3_airline_{split}.parquet"
        pd.DataFrame(rows(split)).to_parquet(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m adapters.verl.dataset OUT_DIR")
    for p in write(sys.argv[1]):
        print(p)
