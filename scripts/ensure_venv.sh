# Sourced by run_demo.sh and run_tests.sh: create or refresh .venv from the requirements.
# The venv is rebuilt when missing or made by another Python, and re-synced when a requirements
# file changed since the last install. REQUIREMENTS=requirements-gpu.txt selects the GPU build;
# PYTHON_BIN=/path/to/python3.11 picks the interpreter.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO_ROOT/scripts/paths.sh"
VENV_DIR="$(dir_from_env VENV_DIR "$REPO_ROOT/.venv")"  # relative: from where the script was started
REQUIREMENTS="${REQUIREMENTS:-requirements.txt}"
# The pins have wheels for one Python only: numpy 1.23.5 stops at 3.11, pymongo 4.20.1 needs >= 3.11.
SUPPORTED_PYTHONS="3.11"

python_version() {  # python_version PYTHON: its major.minor, or nothing when it does not run
  local out
  out="$("$1" --version 2>&1)" || return 0
  [[ $out =~ ^Python\ ([0-9]+\.[0-9]+) ]] && echo "${BASH_REMATCH[1]}"
}

supported() { [[ " $SUPPORTED_PYTHONS " == *" $1 "* ]]; }

# find_python: the first interpreter of PYTHON_BIN, python3.X (X supported), python3 whose version
# fits; none: one line saying what was found and how to get one, exit 2.
find_python() {
  local candidates=() name path version seen=()
  if [ -n "${PYTHON_BIN:-}" ]; then candidates=("$PYTHON_BIN")
  else
    for version in $SUPPORTED_PYTHONS; do candidates+=("python$version"); done
    candidates+=(python3)
  fi
  for name in "${candidates[@]}"; do
    path="$(command -v "$name")" || continue
    version="$(python_version "$path")"
    if [ -n "$version" ] && supported "$version"; then echo "$path"; return 0; fi
    seen+=("$name is ${version:-not runnable}")
  done
  echo "error: no Python $SUPPORTED_PYTHONS found${seen[*]:+ (${seen[*]})}; the pinned numpy and pymongo" \
    "need it: install it (apt-get install python3.11, pyenv install 3.11 or uv python install 3.11)" \
    "and re-run, or set PYTHON_BIN=/path/to/python3.11" >&2
  exit 2
}

ensure_venv() {
  local stamp="$VENV_DIR/.requirements.stamp" python_bin
  local want
  want="$REQUIREMENTS $(sha256sum < "$REPO_ROOT/$REQUIREMENTS" | cut -d' ' -f1)"
  # CPU and GPU wheels both install the package `mxnet`: switching builds starts a fresh venv.
  if [ -f "$stamp" ] && [ "$(cut -d' ' -f1 "$stamp")" != "$REQUIREMENTS" ]; then
    echo "[venv] switching to $REQUIREMENTS: recreating $VENV_DIR"
    rm -rf "$VENV_DIR"
  fi
  # A venv of an unsupported Python (made by an earlier version of this script) cannot install the pins.
  if [ -x "$VENV_DIR/bin/python" ] && ! supported "$(python_version "$VENV_DIR/bin/python")"; then
    echo "[venv] $VENV_DIR is not Python $SUPPORTED_PYTHONS: recreating it"
    rm -rf "$VENV_DIR"
  fi
  if [ ! -x "$VENV_DIR/bin/python" ]; then
    python_bin="$(find_python)" || exit 2
    echo "[venv] creating $VENV_DIR with $("$python_bin" --version 2>&1) ($python_bin)"
    "$python_bin" -m venv "$VENV_DIR"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[venv] installing $REQUIREMENTS"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/$REQUIREMENTS"
    echo "$want" > "$stamp"
  fi
  use_venv
}

use_venv() {  # VENV_DIR's bin/ first on PATH (also for scripts/activate.sh)
  export PATH="$VENV_DIR/bin:$PATH"
  # The GPU wheel finds cuDNN, NCCL and the CUDA runtime in the nvidia-* packages.
  local nvidia_libs
  nvidia_libs="$(compgen -G "$VENV_DIR/lib/python3*/site-packages/nvidia/*/lib" | paste -sd: - || true)"
  if [ -n "$nvidia_libs" ]; then
    export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}
