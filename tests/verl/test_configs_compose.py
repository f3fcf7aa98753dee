"""The shipped configs compose with verl's own hydra config and pass verl's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from verl_required import verl  # noqa: F401  (skip / fail guard)

from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from adapters.verl.config import BenchAlgoConfig, SDPOPolicyLossConfig, SGCDSection
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "adapters" / "verl" / "configs"
NAMES = [f"{m}_{b}" for m in ("grpo", "sgcd", "sdpo") for b in ("fsdp", "megatron")]


def _compose(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=name, overrides=["actor_rollout_ref.model.path=/models/stand-in", *overrides])


@pytest.mark.parametrize("name", NAMES)
def test_config_composes_and_validates(name: str) -> None:
    cfg = _compose(name)
    method, backend = name.split("_")
    algo = omega_conf_to_dataclass(cfg.algorithm)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(algo, BenchAlgoConfig) and algo.method == method and algo.adv_estimator == "grpo"
    assert algo.filter_groups.enable and algo.filter_groups.metric == "reward"
    assert actor.strategy == backend and actor.use_kl_loss and actor.kl_loss_type == "low_var_kl"
    if method == "sdpo":
        assert isinstance(actor.policy_loss, SDPOPolicyLossConfig) and actor.policy_loss.loss_mode == "sdpo"
    else:
        assert actor.policy_loss.loss_mode == "vanilla"
    # the exact divergence and SDPO's top-k JSD use the FSDP engine's top-k logits hook
    if method == "sgcd":
        assert isinstance(algo.sgcd, SGCDSection)
        assert algo.sgcd.divergence_estimator == ("exact" if backend == "fsdp" else "shared_topk")
    if method == "sdpo":
        assert algo.sdpo.divergence == ("topk" if backend == "fsdp" else "sampled_token")
    if backend == "megatron":
        assert cfg.actor_rollout_ref.actor.megatron.tensor_model_parallel_size == 1
        assert cfg.actor_rollout_ref.actor.megatron.pipeline_model_parallel_size == 1
    assert cfg.actor_rollout_ref.rollout.agent.default_agent_loop == "tau3_airline_agent"
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    OmegaConf.resolve(cfg)


def test_unknown_key_is_still_rejected() -> None:
    """The _target_ subclasses add our keys only; verl keeps rejecting typos."""
    cfg = _compose("sgcd_fsdp", "+algorithm.sgcd.w_maxx=3.0")
    with pytest.raises(InstantiationException, match="w_maxx"):
        omega_conf_to_dataclass(cfg.algorithm)


def test_bad_value_names_key_and_choices() -> None:
    cfg = _compose("sgcd_fsdp", "algorithm.method=sgdc")
    with pytest.raises(InstantiationException, match=r"algorithm.method='sgdc'.*Did you mean 'sgcd'"):
        omega_conf_to_dataclass(cfg.algorithm)
