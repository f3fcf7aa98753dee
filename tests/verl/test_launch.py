"""The launch entry composes our configs through its own hydra main and prepares them for verl."""

from __future__ import annotations

import subprocess
import sys

from verl_required import verl  # noqa: F401  (skip / fail guard)

import pandas as pd

from hydra import compose, initialize_config_dir

from adapters.verl import dataset, launch
from adapters.verl.trainer import TRAINERS, SGCDTrainerSync, install_trainer
from verl.trainer.ppo.v1 import get_trainer_cls


def test_prepare_fills_agent_loop_registry_and_validates() -> None:
    with initialize_config_dir(config_dir=str(launch.CONFIG_DIR), version_base=None):
        cfg = compose(config_name="sgcd_megatron", overrides=["actor_rollout_ref.model.path=/models/stand-in"])
    out = launch.prepare(cfg)
    assert out.actor_rollout_ref.rollout.agent.agent_loop_config_path == str(launch.AGENT_LOOPS_YAML)
    assert launch.AGENT_LOOPS_YAML.is_file()


def test_hydra_main_prints_the_composed_job_config() -> None:
    """``--cfg job`` makes hydra compose and print without running (no Ray, no GPU)."""
    out = subprocess.run(
        [sys.executable, "-m", "adapters.verl.launch", "--config-name", "sdpo_fsdp", "--cfg", "job",
         "actor_rollout_ref.model.path=/models/stand-in"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loss_mode: sdpo" in out.stdout and "adapters.verl.config.BenchAlgoConfig" in out.stdout


def test_install_trainer_swaps_the_sync_entry_only() -> None:
    before = get_trainer_cls("sync")
    try:
        assert install_trainer("sgcd") is SGCDTrainerSync and get_trainer_cls("sync") is SGCDTrainerSync
    finally:
        install_trainer("grpo")
    assert get_trainer_cls("sync") is TRAINERS["grpo"] is before


def test_dataset_rows_select_the_agent_loop(tmp_path) -> None:
    train, test = dataset.write(tmp_path)
    df = pd.read_parquet(train)
    assert len(df) == 30 and len(pd.read_parquet(test)) == 20
    assert set(df["agent_name"]) == {"tau3_airline_agent"}
    assert df["extra_info"].iloc[0]["task_id"] == dataset.rows("train")[0]["extra_info"]["task_id"]
