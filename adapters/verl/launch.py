"""Launch GRPO+KL, SGCD or SDPO training on verl 0.9.1 (FSDP or Megatron, vLLM rollouts, Ray).

    python -m adapters.verl.launch --config-name sgcd_fsdp \\
        actor_rollout_ref.model.path=/models/Qwen3-4B \\
        data.train_files=data/tau3_airline_train.parquet data.val_files=data/tau3_airline_test.parquet

Config names: ``{grpo,sgcd,sdpo}_{fsdp,megatron}`` (``adapters/verl/configs``); every other key is
a normal verl hydra override. Before starting Ray this checks that the ``verl.plugins`` entry
point registered our names (:func:`adapters.verl.plugin.check_registered`), fills in the
agent-loop registry file, and runs verl's own ``validate_config``. The run goes through verl's
``run_ppo`` with :class:`adapters.verl.trainer.SGCDTaskRunner`.

Hydra writes nothing into the working directory and does not change it (``hydra.run.dir=.``,
``hydra.output_subdir=null``, stdout-only job logging; set in ``configs/_sgcd_bench_common.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
AGENT_LOOPS_YAML = CONFIG_DIR / "agent_loops.yaml"


def prepare(config: DictConfig) -> DictConfig:
    """Check registration, fill ``agent_loop_config_path``, validate with verl; returns ``config``."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from adapters.verl import plugin

    plugin.check_registered()
    agent = config.actor_rollout_ref.rollout.agent
    if not agent.get("agent_loop_config_path"):
        with open_dict(config):
            agent.agent_loop_config_path = str(AGENT_LOOPS_YAML)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    return config


@hydra.main(config_path="configs", config_name="grpo_fsdp", version_base=None)
def main(config: DictConfig) -> None:
    """Hydra entry point: prepare the config, then hand it to verl's ``run_ppo``."""
    from verl.trainer.main_ppo import run_ppo
    from verl.utils.device import auto_set_device

    from adapters.verl.trainer import SGCDTaskRunner

    auto_set_device(config)
    run_ppo(prepare(config), task_runner_class=SGCDTaskRunner)


if __name__ == "__main__":
    main()
