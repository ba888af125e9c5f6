# Sourced by run_demo.sh and run_tests.sh: create or refresh .venv from the requirements.
# The venv is rebuilt when missing and re-synced when a requirements file changed since the last install.
# REQUIREMENTS=requirements-gpu.txt selects the GPU build.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO_ROOT/.venv}"
REQUIREMENTS="${REQUIREMENTS:-requirements.txt}"
PYTHON_BIN="${PYTHON_BIN:-$(command -v python3.11 || command -v python3)}"

ensure_venv() {
  local stamp="$VENV_DIR/.requirements.sha256"
  local want
  want="$(cd "$REPO_ROOT" && cat "$REQUIREMENTS" requirements.txt | sha256sum | cut -d' ' -f1)"
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
}
