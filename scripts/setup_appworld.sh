#!/usr/bin/env bash
# Create the AppWorld venv used by the AppWorld env (sgcd_envs/appworld) and its tests.
# AppWorld pins pydantic<2, so it gets its own venv and runs in its own process.
# Idempotent: a venv that already has appworld==0.1.3.post1 unpacked is only checked (~1 s).
# Needs ./.venv (scripts/setup.sh). Installs from the package registry; `appworld install` is
# offline. It downloads no AppWorld data: users provide it through APPWORLD_ROOT (README).
#   SGCD_APPWORLD_VENV  venv path (default: ./.venv-appworld)
#   SGCD_PYTHON         interpreter (>= 3.11) to create it from (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SGCD_APPWORLD_VENV:-$PWD/.venv-appworld}"
exec .venv/bin/python -m sgcd_envs.appworld.setup --venv "$venv" --python "${SGCD_PYTHON:-python3}"
