#!/usr/bin/env bash
# GPU smoke check for a machine with NVIDIA GPUs, one command, a few minutes:
#   1. the GPUs nvidia-smi lists, and whether the MXNet to be used has code for them (python -m
#      train.gpu_support: the mxnet-cu117 wheel's sm_50..sm_86 and no PTX, or the code read from the
#      libmxnet.so of NVIDIA's container or of your build); when it cannot run, one line says why and
#      what to use instead, before anything is installed
#   2. installs requirements-gpu.txt into the venv (scripts/ensure_venv.sh), or with MXNET_FROM_SYSTEM=1
#      the rest beside the system's MXNet
#   3. the installed libmxnet.so's code for each GPU, mx.runtime.Features, NVRTC for the runtime fusion
#      (MXNET_USE_FUSION=0 when it cannot compile for the GPU), TF32, and a convolution on every GPU
#   4. 20 training steps of a ResNeXt-101 at 180 px on synthetic data, float32 and float16, on one
#      GPU and on all, and float32 with the original's 8 BatchNorm groups on one GPU: images/s and
#      the GPU memory used
#   5. predicts 1,000 demo products with flip TTA on the GPUs, and compares the GPU's probabilities
#      with the CPU's on 16 pictures (in true float32: NVIDIA_TF32_OVERRIDE=0 unless set)
# Usage: scripts/gpu_check.sh
#   GPUS=0,1             checks only these GPUs
#   DETECT_ONLY=1        stops after step 1
#   MXNET_FROM_SYSTEM=1  NVIDIA's MXNet container: its MXNet, in a venv that sees it (README: GPUs)
#   SKIP_INSTALL=1       uses the venv as it is (e.g. your own source build: its code is read in step 1)
#   GPUS=cpu:0,cpu:1 SKIP_INSTALL=1 DTYPES=float32: the script's path on CPU contexts, to test the script
set -euo pipefail
CALLER_DIR="$PWD"  # a relative CHECK_DIR or VENV_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

CHECK_DIR="$(dir_from_env CHECK_DIR gpu_check)"   # demo data, checkpoint, logs (re-made each run)
GPUS="${GPUS-}"                                   # GPU ids, e.g. 0,1 (empty: every GPU nvidia-smi lists)
NETWORK="${NETWORK:-resnext-101}"                 # the solution's M10 network (ResNeXt-101 32x4d)
IMAGE_SIZE="${IMAGE_SIZE:-180}"                   # the solution's input size
STEPS="${STEPS:-20}"                              # training steps per run
BATCH_PER_GPU="${BATCH_PER_GPU:-32}"              # images per GPU and step (the solution: 64 at 8 GPUs)
DTYPES="${DTYPES:-float32 float16}"               # precisions trained
CHECK_BN_GROUPS="${CHECK_BN_GROUPS:-8}"           # BatchNorm groups of the extra run on one GPU (0: no such run)
NUM_CATEGORIES="${NUM_CATEGORIES:-40}"            # demo categories: the network's outputs
NUM_PRODUCTS="${NUM_PRODUCTS:-1000}"              # demo products predicted with flip TTA
COMPARE_IMAGES="${COMPARE_IMAGES:-16}"            # pictures whose GPU and CPU probabilities are compared
COMPARE_TOLERANCE="${COMPARE_TOLERANCE:-1e-3}"    # float32 cuDNN vs oneDNN: other summation orders
PREDICT_BATCH_SIZE="${PREDICT_BATCH_SIZE:-128}"   # views per forward pass
SYSTEM_PYTHON="${PYTHON_BIN:-python3}"            # runs step 1 before the venv exists (standard library only)
if [ "${MXNET_FROM_SYSTEM:-0}" != 1 ]; then REQUIREMENTS=requirements-gpu.txt; fi
source scripts/ensure_venv.sh                     # VENV_DIR, ensure_venv, use_venv
export MXNET_CUDNN_AUTOTUNE_DEFAULT="${MXNET_CUDNN_AUTOTUNE_DEFAULT:-0}"  # as the original; autotune hung on Ampere

fail() { echo "error: $*" >&2; exit 2; }
step() { echo; echo "=== $* ($(date +%H:%M:%S), $(( SECONDS - START )) s)"; }

# detect_gpus: step 1, before anything is installed; sets GPUS (all listed when empty).
detect_gpus() {
  if [[ $GPUS == cpu:* ]]; then  # train.devices' CPU contexts: a dry run of this script without a GPU
    echo "GPUS=$GPUS: CPU contexts standing in for GPUs (a dry run of the script): no GPU detected"; return
  fi
  command -v nvidia-smi > /dev/null || fail "no nvidia-smi on PATH: no NVIDIA driver here, so no GPU to" \
    "check (training and prediction run on the CPU with GPUS= and the CPU build)"
  local python=() mode=()
  if [ "${SKIP_INSTALL:-0}" = 1 ]; then
    [ -x "$VENV_DIR/bin/python" ] || fail "SKIP_INSTALL=1 but $VENV_DIR has no Python: run without it"
    python=("$VENV_DIR/bin/python")    # the build in the venv: its own libmxnet.so is read
  elif [ "${MXNET_FROM_SYSTEM:-0}" = 1 ]; then
    python=("$SYSTEM_PYTHON"); mode=(--system)
  else
    python=("$SYSTEM_PYTHON"); mode=(--mxnet wheel)
  fi
  command -v "${python[0]}" > /dev/null || fail "no ${python[0]} to run the check with: set PYTHON_BIN"
  "${python[@]}" -m train.gpu_support --gpus "$GPUS" "${mode[@]}" || exit 2
  [ -n "$GPUS" ] || GPUS="$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, - | tr -d ' ')"
}

install_venv() {
  if [ "${SKIP_INSTALL:-0}" = 1 ]; then
    [ -x "$VENV_DIR/bin/python" ] || fail "SKIP_INSTALL=1 but $VENV_DIR has no Python: run without it"
    echo "SKIP_INSTALL=1: using $VENV_DIR as it is"
    use_venv
  else
    ensure_venv
  fi
}

# check_build: step 3 before the convolution: the installed libmxnet.so's code for each GPU, CUDA in
# mx.runtime.Features, NVRTC for the runtime fusion (turned off when it cannot compile for a GPU).
check_build() {
  local report gpus_args=()
  if [[ $GPUS != cpu:* ]]; then gpus_args=(--gpus "$GPUS"); fi
  report="$(python -m train.gpu_support "${gpus_args[@]}" --import --nvrtc)" || exit 2
  grep -v '^FUSION=' <<< "$report"
  if grep -q '^FUSION=0' <<< "$report"; then
    if [ -z "${MXNET_USE_FUSION:-}" ]; then
      export MXNET_USE_FUSION=0
      echo "MXNET_USE_FUSION=0 for the rest of this check; export it for training and prediction on these GPUs"
    fi
  fi
}

# sample_memory FILE: nvidia-smi writes the memory used by each GPU to FILE every 200 ms (its pid: $!).
sample_memory() {
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "$1" 2> /dev/null &
}

# peak_memory FILE: "0: 9876 MiB, 1: 9912 MiB", the most each GPU of GPUS used.
peak_memory() {
  awk -F', *' -v gpus=",${GPUS}," '$2 ~ /^[0-9]+$/ && index(gpus, "," $1 ",") {
      if ($2 > peak[$1]) peak[$1] = $2 }
    END { n = 0; for (g in peak) { printf "%s%s: %d MiB", (n++ ? ", " : ""), g, peak[g] } }' "$1"
}

# benchmark DTYPE GPU_IDS [PREFIX [BN_GROUPS]]: STEPS steps on synthetic data; one table row;
# PREFIX: keep the weights; BN_GROUPS: that many executors (BatchNorm groups) over the GPUs.
benchmark() {
  local devices=$(( $(tr -cd , <<< "$2" | wc -c) + 1 )) log="$CHECK_DIR/train_$1_gpus_${2//[,:]/_}${4:+_bn$4}.log"
  local batch=$(( BATCH_PER_GPU * devices )) label="$2${4:+ x$4 BN}" sampler
  sample_memory "$log.memory"; sampler=$!
  if ! python -m train.train_model --symbol "$NETWORK" --benchmark 1 --num-classes "$NUM_CATEGORIES" \
      --image-shape "3,$IMAGE_SIZE,$IMAGE_SIZE" --batch-size "$batch" --num-examples $(( STEPS * batch )) \
      --num-epochs 1 --gpus "$2" --kv-store device --dtype "$1" --disp-batches 5 --top-k 0 \
      ${3:+--model-prefix "$3"} ${4:+--bn-groups "$4"} > "$log" 2>&1; then
    kill "$sampler" 2> /dev/null || true
    fail "training $NETWORK ($1, GPUs $label) failed: $(grep -m1 '^error:' "$log" || tail -n 1 "$log") (log: $log)"
  fi
  kill "$sampler" 2> /dev/null || true
  wait "$sampler" 2> /dev/null || true
  # MXNet's last speed line covers the steps after the first 5 (start-up excluded)
  local speed
  speed="$(grep -o 'Speed: [0-9.]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  printf "%-8s %-16s %6d %12s   %s\n" "$1" "$label" "$batch" "${speed:-?}" "$(peak_memory "$log.memory")"
}

START=$SECONDS
step "1/5 GPUs and what the MXNet to be used can run on"
detect_gpus
if [ "${DETECT_ONLY:-0}" = 1 ]; then echo "DETECT_ONLY=1: GPUs $GPUS can run it"; exit 0; fi
FIRST_GPU="${GPUS%%,*}"
# The folder is the check's own: refuse to empty a folder it did not make.
if [ -e "$CHECK_DIR" ] && [ ! -e "$CHECK_DIR/.gpu_check" ] && [ -n "$(ls -A "$CHECK_DIR")" ]; then
  fail "CHECK_DIR $CHECK_DIR exists and was not made by gpu_check.sh; set CHECK_DIR to another folder"
fi

step "2/5 install $REQUIREMENTS$([ "$MXNET_FROM_SYSTEM" = 1 ] && echo " beside the system's MXNet")"
install_venv

step "3/5 the installed build, the CUDA libraries and a convolution on GPUs $GPUS"
check_build
python -m train.devices --gpus "$GPUS" --run-op || exit 2

step "4/5 train $STEPS steps of $NETWORK at $IMAGE_SIZE px on synthetic data"
rm -rf "$CHECK_DIR" && mkdir -p "$CHECK_DIR/model" && touch "$CHECK_DIR/.gpu_check"
MODEL_PREFIX="$CHECK_DIR/model/check"
printf "%-8s %-16s %6s %12s   %s\n" dtype GPUs batch images/s "GPU memory (most used)"
for dtype in $DTYPES; do
  benchmark "$dtype" "$FIRST_GPU" "$([ "$dtype" = float32 ] && echo "$MODEL_PREFIX")"
  if [ "$GPUS" != "$FIRST_GPU" ]; then benchmark "$dtype" "$GPUS"; fi
done
# The original's per-device BatchNorm batch on one GPU: the cost of several executors (docs/gpus.md)
if [ "$CHECK_BN_GROUPS" -gt 1 ] && [ $(( BATCH_PER_GPU % CHECK_BN_GROUPS )) = 0 ]; then
  benchmark float32 "$FIRST_GPU" "" "$CHECK_BN_GROUPS"
fi
[ -f "$MODEL_PREFIX-0001.params" ] || fail "no float32 run in DTYPES=$DTYPES: nothing to predict with"

step "5/5 predict $NUM_PRODUCTS demo products with flip TTA; GPU vs CPU on $COMPARE_IMAGES pictures"
python -m data.make_demo_data --out-dir "$CHECK_DIR/demo" --num-categories "$NUM_CATEGORIES" \
  --num-train-products $(( 3 * NUM_CATEGORIES )) --num-test-products "$NUM_PRODUCTS" --seed 0 --force > "$CHECK_DIR/demo_data.log" 2>&1 ||
  fail "making the demo data failed: $(tail -n 1 "$CHECK_DIR/demo_data.log")"
MODEL_FILES=(--symbol "$MODEL_PREFIX-symbol.json" --params "$MODEL_PREFIX-0001.params")
predict_start=$SECONDS
python -m predict.predict --bson "$CHECK_DIR/demo/test.bson" --csv "$CHECK_DIR/demo/category_names.csv" \
  "${MODEL_FILES[@]}" --image-shape "3,$IMAGE_SIZE,$IMAGE_SIZE" --multi-view 1 --gpus "$GPUS" \
  --batch-size "$PREDICT_BATCH_SIZE" --output "$CHECK_DIR/predictions.csv.gz" --force \
  > "$CHECK_DIR/predict.log" 2>&1 || fail "prediction failed: $(grep -m1 '^error:' "$CHECK_DIR/predict.log" ||
                                                            tail -n 1 "$CHECK_DIR/predict.log") (log: $CHECK_DIR/predict.log)"
echo "predicted $NUM_PRODUCTS products on GPUs $GPUS in $(( SECONDS - predict_start )) s: $CHECK_DIR/predictions.csv.gz"
# in true float32 on Ampere and later too: TF32 differs from the CPU by more than the tolerance
NVIDIA_TF32_OVERRIDE="${NVIDIA_TF32_OVERRIDE:-0}" python -m predict.compare_devices --bson "$CHECK_DIR/demo/test.bson" "${MODEL_FILES[@]}" --gpus "$GPUS" \
  --image-shape "3,$IMAGE_SIZE,$IMAGE_SIZE" --num-images "$COMPARE_IMAGES" --tolerance "$COMPARE_TOLERANCE" || exit 2

echo
echo "GPU check passed in $(( SECONDS - START )) s (logs: $CHECK_DIR)"
