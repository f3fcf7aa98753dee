#!/usr/bin/env bash
# The project's test command (README, CI): the whole suite on the CPU.
#   1. everything but the verl plugin, in .venv (scripts/setup.sh); the AppWorld tests use
#      .venv-appworld (scripts/setup_appworld.sh) and skip without it, except under CI;
#   2. tests/verl against real verl 0.9.1, in .venv-verl (scripts/setup_verl.sh; verl pins an
#      older transformers, so it has its own venv). Without that venv the step is skipped with
#      a note, except under CI, where a missing verl venv is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
# Under CI a missing AppWorld venv fails its tests instead of skipping them.
if [ "${CI:-}" = "true" ]; then export SGCD_REQUIRE_APPWORLD=1; fi
.venv/bin/python -m pytest -q --ignore=tests/verl "$@"
if [ -x .venv-verl/bin/python ]; then
  SGCD_REQUIRE_VERL=1 .venv-verl/bin/python -m pytest -q tests/verl
elif [ "${CI:-}" = "true" ]; then
  echo "CI: .venv-verl is missing; run scripts/setup_verl.sh" >&2
  exit 1
else
  echo "tests/verl skipped: no .venv-verl (run scripts/setup_verl.sh to include them)"
fi
