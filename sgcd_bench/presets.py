"""Named run presets: every size of a run in one place, printed at the start of each run.

``cpu`` is the embedded default, for a 2-core machine and SmolLM2-135M: the tiny-shop testbed
(``sgcd_envs/TinyShop-v0``, its own deterministic user, the faithful prompt: no stand-in), a warm
start that clones 32 reference trajectories (cached after the first run), then a few RL steps per
method; budgets fit the env's longest reference episode (6 turns × 48 tokens). Its numbers are
the testbed's own, a toy, not a benchmark. ``gpu`` is for one GPU and a real model
(``--model PATH``) on τ³-airline: larger groups and batches, three evaluation trials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from adapters.local.prompting import PromptVariant
from adapters.local.rollout import DECODERS
from adapters.local.sft import SFTSettings
from adapters.local.trainer import LoopSettings
from algorithms.config import DynamicSamplingConfig, GRPOConfig, SDPOConfig, SGCDConfig
from sgcd_common import unknown_choice


class PresetError(ValueError):
    """Unknown preset or a bad override; the message says what is allowed."""


@dataclass(frozen=True)
class Preset:
    """Everything a run needs besides the model and the method."""

    name: str
    loop: LoopSettings
    grpo: GRPOConfig
    sampling: DynamicSamplingConfig
    sgcd: SGCDConfig
    sdpo: SDPOConfig
    prompt_variant: PromptVariant
    train_split: str
    eval_split: str
    eval_tasks: int | None
    """First N tasks of the eval split (None = all)."""
    eval_trials: int
    eval_temperature: float
    """0 = greedy (one trial is then enough); > 0 samples each trial."""
    device: str
    scripted_user_turns: int
    """Replies the scripted stand-in user gives before it ends the conversation."""
    env: str = "tau3-airline"
    """The environment a run uses unless ``--env`` names another (id or alias)."""
    warm_start: SFTSettings | None = None
    """Behaviour cloning of the env's reference trajectories before RL (None: start from the model as is)."""
    probe_tasks: int | None = None
    """Every step, play the first N train tasks in the step's first rollout batch (the probe: the
    same tasks every step and seed, so its curve moves only with the policy, measured before each
    update); None or 0 = no probe."""
    probe_samples: int = 0
    """How the probe plays each task: 0 = once, greedily (it moves only when an argmax flips);
    K > 0 = K times at the rollout temperature, each draw with its own fixed random numbers, so
    it measures the sampling policy the update changes and still moves only with the policy."""
    decoder: str = "auto"
    """How rollouts decode (``adapters.local.rollout.RolloutEngine.decoder``): auto, eager or static."""
    torch_threads: int | None = None
    """CPU threads torch may use (``torch.set_num_threads``); None = torch's default. Set it: on a
    loaded 2-core machine torch's default threads stalled a rollout for 5× its time (issue 15)."""

    def method_configs(self) -> tuple[object, ...]:
        """The method settings this preset sizes (each method takes the one of its own class)."""
        return (self.sgcd, self.sdpo)

    def summary(self) -> dict[str, Any]:
        """The sizes, flat, for printing and for the run's stored config."""
        return {
            "preset": self.name, "prompt_variant": self.prompt_variant,
            "train_split": self.train_split, "eval_split": self.eval_split,
            "eval_tasks": self.eval_tasks, "eval_trials": self.eval_trials,
            "eval_temperature": self.eval_temperature, "device": self.device,
            "scripted_user_turns": self.scripted_user_turns, "env": self.env, "torch_threads": self.torch_threads,
            "probe_tasks": self.probe_tasks, "probe_samples": self.probe_samples, "decoder": self.decoder,
            "loop": asdict(self.loop), "grpo": asdict(self.grpo), "sampling": asdict(self.sampling),
            "sgcd": asdict(self.sgcd), "sdpo": asdict(self.sdpo),
            "warm_start": asdict(self.warm_start) if self.warm_start else None,
        }


PRESETS: dict[str, Preset] = {
    "cpu": Preset(
        name="cpu",
        loop=LoopSettings(steps=4, max_turns=6, max_new_tokens=48, temperature=1.0),
        grpo=GRPOConfig(group_size=4, lr=1e-5),
        sampling=DynamicSamplingConfig(groups_per_batch=2, oversample_factor=2.0, max_rounds=2),
        sgcd=SGCDConfig(),
        sdpo=SDPOConfig(),
        prompt_variant="faithful",
        train_split="train",
        eval_split="test",
        eval_tasks=20,
        eval_trials=1,
        eval_temperature=0.0,
        device="cpu",
        scripted_user_turns=2,
        env="tiny-shop",
        warm_start=SFTSettings(demos=32, held_out=8, epochs=2, lr=3e-4),
        torch_threads=2,
        probe_tasks=10,  # one tiny-shop task of each kind; rides in the rollout batch (+12% step time)
    ),
    "gpu": Preset(
        name="gpu",
        loop=LoopSettings(steps=50, max_turns=30, max_new_tokens=512, temperature=1.0, micro_batch_groups=1,
                          rollout_batch_groups=2, activation_checkpointing=True),
        grpo=GRPOConfig(group_size=8, lr=1e-6),
        sampling=DynamicSamplingConfig(groups_per_batch=8, oversample_factor=1.5, max_rounds=4),
        sgcd=SGCDConfig(),
        sdpo=SDPOConfig(),
        prompt_variant="faithful",
        train_split="train",
        eval_split="test",
        eval_tasks=None,
        eval_trials=3,
        eval_temperature=1.0,
        device="cuda",
        scripted_user_turns=10,
        env="tau3-airline",
    ),
}


def get_preset(name: str) -> Preset:
    """Look up a preset by name, with a "Did you mean" on a typo."""
    if name not in PRESETS:
        raise PresetError(unknown_choice("preset", name, PRESETS))
    return PRESETS[name]


def with_overrides(preset: Preset, **overrides: Any) -> Preset:
    """A copy of ``preset`` with CLI overrides (None = keep); validation runs again."""
    loop_keys = {"steps", "max_turns", "max_new_tokens", "seed", "micro_batch_groups", "rollout_batch_groups",
                 "activation_checkpointing"}
    loop = replace(preset.loop, **{k: v for k, v in overrides.items() if k in loop_keys and v is not None})
    grpo = preset.grpo
    if overrides.get("group_size") is not None:
        grpo = replace(grpo, group_size=overrides["group_size"])
    if overrides.get("lr") is not None:
        grpo = replace(grpo, lr=overrides["lr"])
    sampling = preset.sampling
    if overrides.get("groups_per_batch") is not None:
        sampling = replace(sampling, groups_per_batch=overrides["groups_per_batch"])
    top = {k: v for k, v in overrides.items()
           if k in {"prompt_variant", "eval_tasks", "eval_trials", "eval_temperature", "device", "eval_split",
                    "train_split", "probe_tasks", "probe_samples", "torch_threads", "decoder"}
           and v is not None}
    if "decoder" in top and top["decoder"] not in DECODERS:
        raise PresetError(f"--decoder must be one of {', '.join(DECODERS)}, got {top['decoder']!r}")
    if "eval_trials" in top and top["eval_trials"] < 1:
        raise PresetError(f"--eval-trials must be >= 1, got {top['eval_trials']}")
    if "torch_threads" in top and top["torch_threads"] < 1:
        raise PresetError(f"--threads must be >= 1, got {top['torch_threads']}")
    if "probe_tasks" in top and top["probe_tasks"] < 0:
        raise PresetError(f"--probe-tasks must be >= 0 (0 = no probe), got {top['probe_tasks']}")
    if "probe_samples" in top and top["probe_samples"] < 0:
        raise PresetError(f"--probe-samples must be >= 0 (0 = greedy), got {top['probe_samples']}")
    if "eval_tasks" in top and top["eval_tasks"] < 1:
        raise PresetError(f"--eval-tasks must be >= 1, got {top['eval_tasks']}")
    if overrides.get("warm_start") is not None:  # --warm-start / --no-warm-start
        top["warm_start"] = (preset.warm_start or SFTSettings()) if overrides["warm_start"] else None
    sft_keys = {"sft_demos": "demos", "sft_epochs": "epochs", "sft_lr": "lr"}
    sft = {field: overrides[key] for key, field in sft_keys.items() if overrides.get(key) is not None}
    if sft:
        top["warm_start"] = replace(top.get("warm_start", preset.warm_start) or SFTSettings(), **sft)
    return replace(preset, loop=loop, grpo=grpo, sampling=sampling, **top)
