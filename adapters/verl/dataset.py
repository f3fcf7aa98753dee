"""Write task lists as the parquet files verl's RLHFDataset reads (τ³-airline, τ²-retail,
τ²-telecom, AppWorld).

``python -m adapters.verl.dataset OUT_DIR`` → ``OUT_DIR/tau3_airline_{train,test}.parquet``;
``--env tau2-retail`` → ``OUT_DIR/tau2_retail_{train,test}.parquet`` (``tau2-telecom`` likewise).
``python -m adapters.verl.dataset OUT_DIR --appworld train,dev [--root DIR]`` →
``OUT_DIR/appworld_{train,dev}.parquet`` from the AppWorld data under ``DIR`` (default
``$APPWORLD_ROOT``); the task ids come from AppWorld's own ``load_task_ids`` (through
``sgcd_envs.appworld.AppWorldEnv.task_ids``, which runs in the AppWorld venv's worker).

Each row selects an agent loop (``agent_name``) and a task (``extra_info.task_id``); the agent
loop builds the real prompt from the env, so ``prompt`` holds only a short placeholder user
message (verl's dataset needs one to compute lengths). AppWorld rows must name the loop whose
``env_kwargs.split`` (``configs/agent_loops.yaml``) holds their task: ``appworld_agent`` for
train, ``appworld_dev_agent`` for dev; other splits need ``agent_name`` given explicitly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adapters.verl.agent_loop import (
    AGENT_NAME,
    APPWORLD_AGENT_NAME,
    APPWORLD_ENV_ID,
    ENV_ID,
    RETAIL_AGENT_NAME,
    RETAIL_ENV_ID,
    TELECOM_AGENT_NAME,
    TELECOM_ENV_ID,
)

DATA_SOURCE = ENV_ID
"""Data source of the τ³-airline rows (each τ domain's rows carry their env id)."""
APPWORLD_AGENT_BY_SPLIT = {"train": APPWORLD_AGENT_NAME, "dev": "appworld_dev_agent"}
"""The ``agent_loops.yaml`` entry whose env runs each AppWorld split."""


TAU_DOMAINS = {
    "tau3-airline": (ENV_ID, AGENT_NAME, "sgcd_envs.tau3_airline.tasks"),
    "tau2-retail": (RETAIL_ENV_ID, RETAIL_AGENT_NAME, "sgcd_envs.tau2_retail.tasks"),
    "tau2-telecom": (TELECOM_ENV_ID, TELECOM_AGENT_NAME, "sgcd_envs.tau2_telecom.tasks"),
}
"""A τ domain's alias → (env id = data source, agent loop, module with ``load_tasks``)."""


def rows(split: str, env: str = "tau3-airline") -> list[dict]:
    """One dataset row per task of ``split`` of a τ domain (:data:`TAU_DOMAINS`; train / test / all,
    and telecom's small / base / full); ``extra_info.split``: the task's split (telecom: the one asked for)."""
    import importlib

    if env not in TAU_DOMAINS:
        raise ValueError(f"unknown τ domain {env!r}; known: {', '.join(TAU_DOMAINS)}")
    env_id, agent_name, tasks_module = TAU_DOMAINS[env]
    load_tasks = importlib.import_module(tasks_module).load_tasks
    return [
        {
            "data_source": env_id,
            "agent_name": agent_name,
            "prompt": [{"role": "user", "content": f"{env} task {t.id}"}],
            "reward_model": {"style": "env", "ground_truth": ""},
            "extra_info": {"task_id": t.id, "split": getattr(t, "split", split), "index": i},
        }
        for i, t in enumerate(load_tasks(split))
    ]


def appworld_task_ids(split: str, root: str | Path | None = None, venv: str | Path | None = None) -> list[str]:
    """AppWorld's task ids of ``split`` under ``root`` (default ``$APPWORLD_ROOT``).

    Raises:
        AppWorldDataError: no data root, no ``data/tasks``, no ``data/datasets/<split>.txt``, or
            an empty split (each message says how to get AppWorld's data).
        AppWorldVenvError: no usable AppWorld venv (run ``sgcd-bench appworld setup``).
        ValueError: an unknown split name.
    """
    from sgcd_envs.appworld import AppWorldDataError, AppWorldEnv

    env = AppWorldEnv(split, root=root, venv=venv)  # checks the venv, the root and the split file
    try:
        ids = env.task_ids()
    finally:
        env.close()
    if not ids:
        raise AppWorldDataError(f"AppWorld split {split!r} under {env.root} lists no task ids "
                                f"(data/datasets/{split}.txt is empty).")
    return ids


def appworld_rows(split: str, root: str | Path | None = None, *, agent_name: str | None = None,
                  venv: str | Path | None = None) -> list[dict]:
    """One dataset row per AppWorld task of ``split`` (``agent_name`` defaults per split, see above)."""
    if agent_name is None:
        if split not in APPWORLD_AGENT_BY_SPLIT:
            raise ValueError(f"AppWorld split {split!r} has no default agent loop (known: "
                             f"{APPWORLD_AGENT_BY_SPLIT}); pass agent_name= for a loop whose "
                             f"env_kwargs.split is {split!r}.")
        agent_name = APPWORLD_AGENT_BY_SPLIT[split]
    return [
        {
            "data_source": APPWORLD_ENV_ID,
            "agent_name": agent_name,
            "prompt": [{"role": "user", "content": f"appworld task {task_id}"}],
            "reward_model": {"style": "env", "ground_truth": ""},
            "extra_info": {"task_id": task_id, "split": split, "index": i},
        }
        for i, task_id in enumerate(appworld_task_ids(split, root, venv))
    ]


def _write(path: Path, table: list[dict]) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_parquet(path)
    return path


def write(out_dir: str | Path, env: str = "tau3-airline") -> list[Path]:
    """Write a τ domain's train and test parquet files (``<env>_{train,test}.parquet``); return their paths."""
    out = Path(out_dir)
    stem = env.replace("-", "_")
    return [_write(out / f"{stem}_{split}.parquet", rows(split, env)) for split in ("train", "test")]


def write_appworld(out_dir: str | Path, splits: list[str], root: str | Path | None = None, *,
                   agent_name: str | None = None, venv: str | Path | None = None) -> list[Path]:
    """Write ``appworld_<split>.parquet`` for each split; return their paths."""
    out = Path(out_dir)
    return [_write(out / f"appworld_{split}.parquet", appworld_rows(split, root, agent_name=agent_name, venv=venv))
            for split in splits]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.verl.dataset", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--env", default="tau3-airline", choices=sorted(TAU_DOMAINS),
                        help="τ domain of the rows (default tau3-airline; AppWorld: --appworld)")
    parser.add_argument("--appworld", metavar="SPLITS", help="comma-separated AppWorld splits (e.g. train,dev)")
    parser.add_argument("--root", help="AppWorld root holding data/ (default $APPWORLD_ROOT)")
    parser.add_argument("--agent-name", help="agent loop for the AppWorld rows (default: per split)")
    args = parser.parse_args(argv)
    if args.appworld:
        splits = [s.strip() for s in args.appworld.split(",") if s.strip()]
        paths = write_appworld(args.out_dir, splits, args.root, agent_name=args.agent_name)
    else:
        paths = write(args.out_dir, args.env)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
