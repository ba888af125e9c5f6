# `source scripts/activate.sh` in your own bash shell: the project's .venv first on PATH and, for the
# GPU build, its CUDA libraries on LD_LIBRARY_PATH (which `source .venv/bin/activate` does not set),
# so that the data/, train/ and predict/ scripts and `python -m ...` use them. ./run_tests.sh or
# ./run_demo.sh make the venv; this only uses it, and never exits your shell.
CALLER_DIR="$PWD"
source "$(dirname "${BASH_SOURCE[0]}")/ensure_venv.sh"
if [ -x "$VENV_DIR/bin/python" ]; then
  use_venv
  echo "using $VENV_DIR ($("$VENV_DIR/bin/python" --version 2>&1))"
else
  echo "error: $VENV_DIR not found: make it with ./run_tests.sh (REQUIREMENTS=requirements-gpu.txt ./run_tests.sh for GPUs)" >&2
fi
unset CALLER_DIR
