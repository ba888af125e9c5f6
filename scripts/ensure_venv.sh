# Sourced by run_demo.sh and run_tests.sh: create or refresh .venv from the requirements.
# The venv is rebuilt when missing, made by an unsupported Python or another PYTHON_BIN version, or
# made for another build than the one asked for (none asked: it keeps its own); it is re-synced when a
# requirements file changed since the last install.
#   REQUIREMENTS=requirements-gpu.txt   the CUDA 11 wheel (Maxwell to Ada GPUs)
#   MXNET_FROM_SYSTEM=1                 the MXNet already installed in the system's Python (NVIDIA's MXNet
#                                       container): a venv with --system-site-packages and everything else
#                                       from requirements-without-mxnet.txt, checked by train.gpu_support
#   PYTHON_BIN=/path/to/python3.10      the interpreter
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO_ROOT/scripts/paths.sh"
VENV_DIR="$(dir_from_env VENV_DIR "$REPO_ROOT/.venv")"  # relative: from where the script was started
# Neither REQUIREMENTS nor MXNET_FROM_SYSTEM given: a venv keeps the build it was made for, so that a
# forgotten variable does not replace the GPU or container venv with the CPU build.
if [ -z "${REQUIREMENTS:-}" ] && [ -z "${MXNET_FROM_SYSTEM:-}" ] && [ -f "$VENV_DIR/.requirements.stamp" ]; then
  REQUIREMENTS="$(cut -d' ' -f1 "$VENV_DIR/.requirements.stamp")"
  if [ "$REQUIREMENTS" = requirements-without-mxnet.txt ]; then MXNET_FROM_SYSTEM=1; fi
fi
MXNET_FROM_SYSTEM="${MXNET_FROM_SYSTEM:-0}"
if [ "$MXNET_FROM_SYSTEM" = 1 ]; then REQUIREMENTS=requirements-without-mxnet.txt; fi
REQUIREMENTS="${REQUIREMENTS:-requirements.txt}"
# The pins have wheels for these only: numpy 1.23.5 stops at 3.11, pymongo 4.18.3 and pandas 2.3.3
# start at 3.9, and 3.10 is the Python of NVIDIA's MXNet containers 24.05/24.06.
SUPPORTED_PYTHONS="3.11 3.10"

python_version() {  # python_version PYTHON: its major.minor, or nothing when it does not run
  local out
  out="$("$1" --version 2>&1)" || return 0
  [[ $out =~ ^Python\ ([0-9]+\.[0-9]+) ]] && echo "${BASH_REMATCH[1]}"
}

supported() { [ -n "$1" ] && [[ " $SUPPORTED_PYTHONS " == *" $1 "* ]]; }

supported_words() { echo "${SUPPORTED_PYTHONS// / or }"; }

# find_python: the first interpreter of PYTHON_BIN, python3.X (X supported, newest first), python3 whose
# version fits; in container mode PYTHON_BIN or python3 only (the system's, which has MXNet).
# None: one line saying what was found and how to get one, exit 2.
find_python() {
  local candidates=() name path version wanted seen=()
  if [ -n "${PYTHON_BIN:-}" ]; then candidates=("$PYTHON_BIN")
  elif [ "$MXNET_FROM_SYSTEM" = 1 ]; then candidates=(python3)
  else candidates=(python3.11 python3.10 python3)
  fi
  # the newest supported version wherever it is (python3.11, or python3 when that is 3.11), then the next
  for wanted in $SUPPORTED_PYTHONS; do
    for name in "${candidates[@]}"; do
      path="$(command -v "$name")" || continue
      version="$(python_version "$path")"
      if [ "$version" = "$wanted" ]; then echo "$path"; return 0; fi
    done
  done
  for name in "${candidates[@]}"; do
    path="$(command -v "$name")" || continue
    version="$(python_version "$path")"
    seen+=("$name is ${version:-not runnable}")
  done
  echo "error: no Python $(supported_words) found${seen[*]:+ (${seen[*]})}; the pinned numpy, pandas and" \
    "pymongo need one of them: install one (apt-get install python3.11, pyenv install 3.11 or uv python" \
    "install 3.11) and re-run, or set PYTHON_BIN=/path/to/python3.11 (or python3.10)" >&2
  exit 2
}

requirements_digest() {  # the requirements file and the one it includes
  cat "$REPO_ROOT/$REQUIREMENTS" "$REPO_ROOT/requirements-without-mxnet.txt" | sha256sum | cut -d' ' -f1
}

# venv_outdated: why the venv must be made again (nothing when it may be kept)
venv_outdated() {
  local stamp="$VENV_DIR/.requirements.stamp" have wanted
  if [ ! -x "$VENV_DIR/bin/python" ]; then return; fi
  have="$(python_version "$VENV_DIR/bin/python")"
  if ! supported "$have"; then echo "$VENV_DIR is not Python $(supported_words)"; return; fi
  if [ -n "${PYTHON_BIN:-}" ]; then
    wanted="$(python_version "$PYTHON_BIN")"
    if supported "$wanted" && [ "$wanted" != "$have" ]; then echo "$VENV_DIR is Python $have, PYTHON_BIN $wanted"; return; fi
  fi
  # CPU, GPU and system builds each install or see their own `mxnet`: switching starts a fresh venv.
  if [ -f "$stamp" ] && [ "$(cut -d' ' -f1 "$stamp")" != "$REQUIREMENTS" ]; then
    echo "$VENV_DIR was made for $(cut -d' ' -f1 "$stamp"), not $REQUIREMENTS"; return
  fi
  if [ "$MXNET_FROM_SYSTEM" = 1 ] && ! grep -q "^include-system-site-packages = true" "$VENV_DIR/pyvenv.cfg"; then
    echo "$VENV_DIR does not see the system's site-packages"; return
  fi
}

# gpu_support ARGS: python -m train.gpu_support in the venv, from the repository (it needs no package)
gpu_support() { (cd "$REPO_ROOT" && "$VENV_DIR/bin/python" -m train.gpu_support "$@"); }

ensure_venv() {
  local stamp="$VENV_DIR/.requirements.stamp" python_bin reason want
  want="$REQUIREMENTS $(requirements_digest)"
  reason="$(venv_outdated)"
  if [ -n "$reason" ]; then
    echo "[venv] $reason: recreating it"
    rm -rf "$VENV_DIR"
  fi
  if [ ! -x "$VENV_DIR/bin/python" ]; then
    python_bin="$(find_python)" || exit 2
    local options=() pip_note=""
    if [ "$MXNET_FROM_SYSTEM" = 1 ]; then options=(--system-site-packages); fi
    # Debian's and Ubuntu's python3 (NVIDIA's containers) come without ensurepip unless python3.X-venv
    # is installed; beside the system's site-packages, the system's pip installs into the venv as well.
    if ! "$python_bin" -c "import ensurepip" > /dev/null 2>&1; then
      if [ "$MXNET_FROM_SYSTEM" = 1 ] && "$python_bin" -m pip --version > /dev/null 2>&1; then
        options+=(--without-pip); pip_note=", the system's pip"
      else
        echo "error: $python_bin cannot make a venv: it has no ensurepip (Debian/Ubuntu: apt-get install" \
          "python$(python_version "$python_bin")-venv, then re-run)" >&2
        exit 2
      fi
    fi
    echo "[venv] creating $VENV_DIR with $("$python_bin" --version 2>&1) ($python_bin)${options[0]:+ and its site-packages}$pip_note"
    "$python_bin" -m venv "${options[@]}" "$VENV_DIR"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # Container mode: the system's MXNet is checked (1.9.x, code for these GPUs) before anything is installed.
    if [ "$MXNET_FROM_SYSTEM" = 1 ]; then gpu_support --system || exit 2; fi
    echo "[venv] installing $REQUIREMENTS"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/$REQUIREMENTS"
    # ... and imported once the venv's numpy is there (mx.runtime.Features: CUDA on a machine with GPUs)
    if [ "$MXNET_FROM_SYSTEM" = 1 ]; then
      (use_venv && gpu_support --system --import --nvrtc) || exit 2
    fi
    echo "$want" > "$stamp"
  fi
  use_venv
}

use_venv() {  # VENV_DIR's bin/ first on PATH (also for scripts/activate.sh)
  export PATH="$VENV_DIR/bin:$PATH"
  # The GPU wheel finds cuDNN, NCCL, NVRTC and the CUDA runtime in the nvidia-* packages.
  local nvidia_libs
  nvidia_libs="$(compgen -G "$VENV_DIR/lib/python3*/site-packages/nvidia/*/lib" | paste -sd: - || true)"
  if [ -n "$nvidia_libs" ]; then
    export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}
