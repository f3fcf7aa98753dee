#!/usr/bin/env bash
# GPU smoke test of the verl plugin: a few training steps of GRPO+KL, SGCD and SDPO on ONE GPU
# with a small local model, multi-turn tau3-airline episodes through our agent loop.
#
# Needs (none of it is installed by scripts/setup_verl.sh, which is the CPU test venv):
#   * a CUDA GPU (>= 24 GB for a 0.5B-0.6B model) and a GPU venv with verl[vllm]==0.9.1
#     (torch 2.11 + vllm 0.24, flash-attn), plus verl[megatron] (megatron-core, megatron-bridge,
#     TransformerEngine) for the megatron configs; then `pip install -e .` of this repo so the
#     verl.plugins entry point is declared.
#   * MODEL_PATH: a local Hugging Face model folder with a chat template that supports tools,
#     e.g. Qwen3-0.6B or Qwen2.5-0.5B-Instruct (nothing is downloaded at run time).
#   * ROLLOUT=transformers (default vllm) uses adapters/verl/transformers_rollout.py instead of
#     vLLM: for a GPU machine without vLLM (slow: one request at a time; a check, not training).
# Usage:
#   MODEL_PATH=/models/Qwen3-0.6B bash adapters/verl/gpu_smoke.sh            # fsdp, all methods
#   MODEL_PATH=... BACKENDS="fsdp megatron" METHODS="sgcd" bash adapters/verl/gpu_smoke.sh
#   MODEL_PATH=... ROLLOUT=transformers METHODS=sgcd bash adapters/verl/gpu_smoke.sh
# Each run writes runs/verl_smoke/<method>_<backend>.log and must finish STEPS optimizer steps.
# What the CPU end-to-end run (tests/verl/test_end_to_end.py) showed that matters here too: dynamic
# sampling (algorithm.filter_groups) works in verl's v1 sync trainer and stays on as shipped;
# episodes must carry min/max_global_steps (the agent loop copies them); the trainer needs
# trainer.v1.trainer_mode=sync (the default).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${MODEL_PATH:?set MODEL_PATH to a local HF model folder}"
python_bin="${SGCD_VERL_PYTHON:-python}"
steps="${STEPS:-2}"
rollout="${ROLLOUT:-vllm}"
out=runs/verl_smoke
mkdir -p "$out"

ROLLOUT="$rollout" "$python_bin" - <<'PY'
import os, verl, torch
from adapters.verl import plugin
assert torch.cuda.is_available(), "gpu_smoke.sh needs a CUDA GPU"
if os.environ["ROLLOUT"] == "vllm":
    import vllm  # noqa: F401  (the rollout engine)
plugin.check_registered()
print(f"verl {verl.__version__}, torch {torch.__version__}, GPU {torch.cuda.get_device_name()}")
PY
"$python_bin" -m adapters.verl.dataset "$out/data"

for backend in ${BACKENDS:-fsdp}; do
  for method in ${METHODS:-grpo sgcd sdpo}; do
    log="$out/${method}_${backend}.log"
    echo "== $method on $backend ($steps steps) -> $log"
    "$python_bin" -m adapters.verl.launch --config-name "${method}_${backend}" \
      actor_rollout_ref.model.path="$MODEL_PATH" \
      data.train_files="$out/data/tau3_airline_train.parquet" \
      data.val_files="$out/data/tau3_airline_test.parquet" \
      data.train_batch_size=2 data.max_prompt_length=8192 data.max_response_length=4096 \
      actor_rollout_ref.rollout.name="$rollout" trainer.device=cuda \
      actor_rollout_ref.rollout.n=4 actor_rollout_ref.rollout.gpu_memory_utilization=0.4 \
      actor_rollout_ref.rollout.multi_turn.max_assistant_turns=6 \
      actor_rollout_ref.rollout.agent.num_workers=2 \
      actor_rollout_ref.actor.ppo_mini_batch_size=2 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
      actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1 actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1 \
      trainer.total_training_steps="$steps" trainer.val_before_train=false trainer.test_freq=-1 trainer.save_freq=-1 \
      trainer.experiment_name="smoke_${method}_${backend}" trainer.default_local_dir="$out/ckpt_${method}_${backend}" \
      2>&1 | tee "$log"
    grep -q "training/global_step:$steps" "$log" || { echo "FAILED: $method/$backend did not reach step $steps"; exit 1; }
  done
done
echo "verl GPU smoke passed: ${METHODS:-grpo sgcd sdpo} on ${BACKENDS:-fsdp}"
