#!/usr/bin/env bash
# GPU smoke check for a machine with NVIDIA GPUs, a few minutes after the install:
#   1. the GPUs nvidia-smi lists, and whether MXNet 1.9.1's CUDA wheels have code for them (they
#      stop at sm_86: no Hopper); when they cannot run, one line says why, before anything is installed
#   2. installs requirements-gpu.txt into the venv (scripts/ensure_venv.sh)
#   3. the CUDA libraries load and a convolution runs on every GPU (python -m train.devices --run-op)
#   4. 20 training steps of a ResNeXt-101 at 180 px on synthetic data, float32 and float16, on one
#      GPU and on all: images/s and the GPU memory used
#   5. predicts 1,000 demo products with flip TTA on the GPUs, and compares the GPU's probabilities
#      with the CPU's on 16 pictures
# Usage: scripts/gpu_check.sh
#   GPUS=0,1         checks only these GPUs
#   DETECT_ONLY=1    stops after step 1
#   SKIP_INSTALL=1   uses the venv as it is (e.g. a source build for Hopper: step 3 then decides)
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
NUM_CATEGORIES="${NUM_CATEGORIES:-40}"            # demo categories: the network's outputs
NUM_PRODUCTS="${NUM_PRODUCTS:-1000}"              # demo products predicted with flip TTA
COMPARE_IMAGES="${COMPARE_IMAGES:-16}"            # pictures whose GPU and CPU probabilities are compared
COMPARE_TOLERANCE="${COMPARE_TOLERANCE:-1e-3}"    # float32 cuDNN vs oneDNN: other summation orders
PREDICT_BATCH_SIZE="${PREDICT_BATCH_SIZE:-128}"   # views per forward pass
# The wheels' machine code: sm_50, 60, 70, 80, 86 and no PTX. A cubin runs on later minor versions of
# its major one (sm_86 on Ada's 8.9), never on another major one.
WHEEL_MAJORS="5 6 7 8"
BUILD_HINT="build MXNet 1.9.1 from source with CUDA >= 11.8, cuDNN 8 and -DMXNET_CUDA_ARCH=9.0 (README: GPUs)"
export MXNET_CUDNN_AUTOTUNE_DEFAULT="${MXNET_CUDNN_AUTOTUNE_DEFAULT:-0}"  # as the original; autotune hung on Ampere

fail() { echo "error: $*" >&2; exit 2; }
step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

# why_not_runnable INDEX NAME CAP: nothing when the wheels run on this GPU, else the reason.
why_not_runnable() {
  local major="${3%%.*}"
  if [[ ! $3 =~ ^[0-9]+\.[0-9]+$ ]]; then
    return 0  # unknown capability (a driver too old to report it): step 3 finds out
  elif [ "$3" = "9.0" ]; then
    echo "GPU $1 ($2) is compute capability 9.0 (Hopper): the MXNet 1.9.1 CUDA wheels carry machine code for" \
      "sm_50..sm_86 only and no PTX, so no kernel of theirs runs on it; $BUILD_HINT"
  elif [[ " $WHEEL_MAJORS " != *" $major "* ]]; then
    echo "GPU $1 ($2) is compute capability $3: the MXNet 1.9.1 CUDA wheels carry machine code for" \
      "sm_50..sm_86 (Maxwell to Ada) only and no PTX; it needs a source build for its architecture"
  fi
}

# detect_gpus: checks the GPUs before anything is installed; sets GPUS (all listed when empty).
detect_gpus() {
  local listing index name cap reason ids=()
  if [[ $GPUS == cpu:* ]]; then  # train.devices' CPU contexts: a dry run of this script without a GPU
    echo "GPUS=$GPUS: CPU contexts standing in for GPUs (a dry run of the script): no GPU detected"; return
  fi
  command -v nvidia-smi > /dev/null || fail "no nvidia-smi on PATH: no NVIDIA driver here, so no GPU to" \
    "check (training and prediction run on the CPU with GPUS= and the CPU build)"
  if ! listing="$(nvidia-smi --query-gpu=index,name,compute_cap --format=csv,noheader 2>&1)"; then
    if [[ $listing == *compute_cap* ]]; then  # drivers before 510 cannot report it
      echo "warning: this driver does not report compute capabilities; the convolution of step 3 tests them"
      listing="$(nvidia-smi --query-gpu=index,name --format=csv,noheader | sed 's/$/, unknown/')"
    else
      fail "nvidia-smi fails: $(grep -m1 . <<< "$listing")"
    fi
  fi
  [ -n "$listing" ] || fail "nvidia-smi lists no GPU"
  while IFS=, read -r index name cap; do
    index="${index// /}" name="$(sed 's/^ *//; s/ *$//' <<< "$name")" cap="${cap// /}"
    if [ -n "$GPUS" ] && [[ ",${GPUS// /}," != *",$index,"* ]]; then continue; fi
    reason="$(why_not_runnable "$index" "$name" "$cap")"
    if [ -n "$reason" ] && [ "${SKIP_INSTALL:-0}" = 1 ]; then  # the venv may hold a source build for it
      echo "warning: $reason; SKIP_INSTALL=1: step 3 tests the build in the venv on it"
    elif [ -n "$reason" ]; then
      fail "$reason, then run this check on it with SKIP_INSTALL=1"
    fi
    echo "GPU $index: $name, compute capability $cap"
    ids+=("$index")
  done <<< "$listing"
  [ ${#ids[@]} -gt 0 ] || fail "GPUS=$GPUS: none of these ids is listed by nvidia-smi"
  [ -n "$GPUS" ] || GPUS="$(IFS=,; echo "${ids[*]}")"
}

install_venv() {
  export REQUIREMENTS=requirements-gpu.txt
  source scripts/ensure_venv.sh
  if [ "${SKIP_INSTALL:-0}" = 1 ]; then
    [ -x "$VENV_DIR/bin/python" ] || fail "SKIP_INSTALL=1 but $VENV_DIR has no Python: run without it"
    echo "SKIP_INSTALL=1: using $VENV_DIR as it is"
    use_venv
  else
    ensure_venv
  fi
  local out
  out="$(python -c 'import mxnet' 2>&1)" || fail "MXNet does not load: $(tail -n 1 <<< "$out")"
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

# benchmark DTYPE GPU_IDS [PREFIX]: STEPS steps on synthetic data; one table row; PREFIX: keep the weights.
benchmark() {
  local devices=$(( $(tr -cd , <<< "$2" | wc -c) + 1 )) log="$CHECK_DIR/train_$1_gpus_${2//[,:]/_}.log" sampler
  local batch=$(( BATCH_PER_GPU * devices ))
  sample_memory "$log.memory"; sampler=$!
  if ! python -m train.train_model --symbol "$NETWORK" --benchmark 1 --num-classes "$NUM_CATEGORIES" \
      --image-shape "3,$IMAGE_SIZE,$IMAGE_SIZE" --batch-size "$batch" --num-examples $(( STEPS * batch )) \
      --num-epochs 1 --gpus "$2" --kv-store device --dtype "$1" --disp-batches 5 --top-k 0 \
      ${3:+--model-prefix "$3"} > "$log" 2>&1; then
    kill "$sampler" 2> /dev/null || true
    fail "training $NETWORK ($1, GPUs $2) failed: $(grep -m1 '^error:' "$log" || tail -n 1 "$log") (log: $log)"
  fi
  kill "$sampler" 2> /dev/null || true
  wait "$sampler" 2> /dev/null || true
  # MXNet's last speed line covers the steps after the first 5 (start-up excluded)
  local speed
  speed="$(grep -o 'Speed: [0-9.]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  printf "%-8s %-16s %6d %12s   %s\n" "$1" "$2" "$batch" "${speed:-?}" "$(peak_memory "$log.memory")"
}

START=$SECONDS
step "1/5 GPUs and what the MXNet 1.9.1 wheels can run on"
detect_gpus
if [ "${DETECT_ONLY:-0}" = 1 ]; then echo "DETECT_ONLY=1: the wheels have code for GPUs $GPUS"; exit 0; fi
FIRST_GPU="${GPUS%%,*}"
# The folder is the check's own: refuse to empty a folder it did not make.
if [ -e "$CHECK_DIR" ] && [ ! -e "$CHECK_DIR/.gpu_check" ] && [ -n "$(ls -A "$CHECK_DIR")" ]; then
  fail "CHECK_DIR $CHECK_DIR exists and was not made by gpu_check.sh; set CHECK_DIR to another folder"
fi

step "2/5 install requirements-gpu.txt"
install_venv

step "3/5 CUDA libraries and a convolution on GPUs $GPUS"
python -m train.devices --gpus "$GPUS" --run-op || exit 2

step "4/5 train $STEPS steps of $NETWORK at $IMAGE_SIZE px on synthetic data"
rm -rf "$CHECK_DIR" && mkdir -p "$CHECK_DIR/model" && touch "$CHECK_DIR/.gpu_check"
MODEL_PREFIX="$CHECK_DIR/model/check"
printf "%-8s %-16s %6s %12s   %s\n" dtype GPUs batch images/s "GPU memory (most used)"
for dtype in $DTYPES; do
  benchmark "$dtype" "$FIRST_GPU" "$([ "$dtype" = float32 ] && echo "$MODEL_PREFIX")"
  if [ "$GPUS" != "$FIRST_GPU" ]; then benchmark "$dtype" "$GPUS"; fi
done
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
python -m predict.compare_devices --bson "$CHECK_DIR/demo/test.bson" "${MODEL_FILES[@]}" --gpus "$GPUS" \
  --image-shape "3,$IMAGE_SIZE,$IMAGE_SIZE" --num-images "$COMPARE_IMAGES" --tolerance "$COMPARE_TOLERANCE" || exit 2

echo
echo "GPU check passed in $(( SECONDS - START )) s (logs: $CHECK_DIR)"
