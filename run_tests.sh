#!/usr/bin/env bash
# Run the test suite in .venv (created on first use). Fast by default;
# RUN_SLOW=1 ./run_tests.sh also runs the slow end-to-end tests, SMOKE=1 only the smoke subset (the data
# stage, one training run, one prediction, the GPU checks, container mode). Extra arguments go to pytest
# (test files or -k, for example).
set -euo pipefail
CALLER_DIR="$PWD"   # a relative VENV_DIR is taken from here
cd "$(dirname "$0")"
source scripts/paths.sh
source scripts/ensure_venv.sh
ensure_venv

MARKERS="not slow"                          # tests marked slow run only with RUN_SLOW=1
if [ "${RUN_SLOW:-0}" = "1" ]; then MARKERS=""; fi
if [ "${SMOKE:-0}" = "1" ]; then MARKERS="smoke"; fi

# pytest.ini's testpaths (tests/) when no file is given
python -m pytest ${MARKERS:+-m "$MARKERS"} "$@"
