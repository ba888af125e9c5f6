# Sourced by run_demo.sh and run_tests.sh: create or refresh .venv from the requirements.
# The venv is rebuilt when missing and re-synced when a requirements file changed since the last install.
# REQUIREMENTS=requirements-gpu.txt selects the GPU build.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO_ROOT/.venv}"
REQUIREMENTS="${REQUIREMENTS:-requirements.txt}"
PYTHON_BIN="${PYTHON_BIN:-$(command -v python3.11 || command -v python3)}"

ensure_venv() {
  local stamp="$VENV_DIR/.requirements.stamp"
  local want
  want="$REQUIREMENTS $(sha256sum < "$REPO_ROOT/$REQUIREMENTS" | cut -d' ' -f1)"
  # CPU and GPU wheels both install the package `mxnet`: switching builds starts a fresh venv.
  if [ -f "$stamp" ] && [ "$(cut -d' ' -f1 "$stamp")" != "$REQUIREMENTS" ]; then
    echo "[venv] switching to $REQUIREMENTS: recreating $VENV_DIR"
    rm -rf "$VENV_DIR"
  fi
  if [ ! -x "$VENV_DIR/bin/python" ]; then
    echo "[venv] creating $VENV_DIR with $("$PYTHON_BIN" --version 2>&1)"
    "$PYTHON_BIN" -m venv "$VENV_DIR"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[venv] installing $REQUIREMENTS"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/$REQUIREMENTS"
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV_DIR/bin:$PATH"
  # The GPU wheel finds cuDNN, NCCL and the CUDA runtime in the nvidia-* packages.
  local nvidia_libs
  nvidia_libs="$(compgen -G "$VENV_DIR/lib/python3*/site-packages/nvidia/*/lib" | paste -sd: - || true)"
  if [ -n "$nvidia_libs" ]; then
    export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}
