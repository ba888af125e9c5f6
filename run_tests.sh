#!/usr/bin/env bash
# Run the test suite in .venv (created on first use). Fast by default;
# RUN_SLOW=1 ./run_tests.sh also runs the slow end-to-end tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
ensure_venv

MARKERS="not slow"                          # tests marked slow run only with RUN_SLOW=1
if [ "${RUN_SLOW:-0}" = "1" ]; then MARKERS=""; fi

python -m pytest tests ${MARKERS:+-m "$MARKERS"} "$@"
