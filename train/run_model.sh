#!/usr/bin/env bash
# Shared body of train/M01.sh ... M14.sh and the experiment scripts: checks the inputs, then runs
# python -m train.train_model with the settings the calling script exported. Not meant to be run alone.
set -euo pipefail
: "${MODEL_NAME:?}" "${SYMBOL:?}" "${DATASET:?}" "${NUM_EPOCHS:?}"

DATA_DIR="${DATA_DIR:-data_dir}"
MODEL_DIR="${MODEL_DIR:-models}"
GPUS="${GPUS-0,1,2,3,4,5,6,7}"
LOAD_EPOCH="${LOAD_EPOCH:-0}"                  # resume from MODEL_DIR/NAME/NAME-%04d.params of this epoch
TRAIN_REC="$DATA_DIR/$DATASET/train.rec"
VAL_REC="$DATA_DIR/$DATASET/valid.rec"
PREFIX="$MODEL_DIR/$MODEL_NAME/$MODEL_NAME"

fail() { echo "error: $*" >&2; exit 2; }
[ -f "$TRAIN_REC" ] || fail "$TRAIN_REC not found: run data/create_${DATASET}.sh first"
case "$SYMBOL" in
  *.json) [ -f "$SYMBOL" ] || fail "$SYMBOL not found; download it from ${PRETRAINED_SOURCE:-its publisher}" ;;
esac
if [ -n "${PARAMS:-}" ] && [ "$LOAD_EPOCH" = "0" ] && [ ! -f "$PARAMS" ]; then
  fail "$PARAMS not found; ${PRETRAINED_SOURCE:+download it from $PRETRAINED_SOURCE}"
fi
mkdir -p "$(dirname "$PREFIX")"

# MXNet's cuDNN autotune can hang on some GPUs (as in the original scripts).
export MXNET_CUDNN_AUTOTUNE_DEFAULT="${MXNET_CUDNN_AUTOTUNE_DEFAULT:-0}"

# Under train/launch_dist.sh: the same command on every worker of a distributed run.
TRAIN=(python -m train.train_model)
KV="${KV_STORE:-device}"
if [ -n "${DIST_WORKERS:-}" ]; then
  TRAIN=(python -m train.launch -n "$DIST_WORKERS" -s "${DIST_SERVERS:-$DIST_WORKERS}" --launcher "${DIST_LAUNCHER:-ssh}"
         ${DIST_HOSTFILE:+-H "$DIST_HOSTFILE"} --log-dir "$(dirname "$PREFIX")/launch_logs" -- "${TRAIN[@]}")
  KV="${DIST_KV_STORE:-dist_sync}"
fi

"${TRAIN[@]}" \
  --symbol "$SYMBOL" ${PARAMS:+--params "$PARAMS"} ${FEATURE_LAYER:+--feature-layer "$FEATURE_LAYER"} \
  ${EXTRA_NETWORK_ARGS:-} \
  --gpus "$GPUS" --kv-store "$KV" --dtype "${DTYPE:-float32}" \
  --data-train "$TRAIN_REC" --data-val "$VAL_REC" --model-prefix "$PREFIX" --load-epoch "$LOAD_EPOCH" \
  --image-shape "${IMAGE_SHAPE:-3,180,180}" --resize "${RESIZE:-0}" --num-classes "${NUM_CLASSES:-5270}" \
  --data-nthreads "${DATA_NTHREADS:-6}" --batch-size "${BATCH_SIZE:-512}" --num-epochs "$NUM_EPOCHS" \
  --optimizer "${OPTIMIZER:-nadam}" --lr "${LR:-0.0001}" --lr-factor "${LR_FACTOR:-0.2}" \
  --lr-step-epochs "${LR_STEP_EPOCHS:-10,13}" --mom "${MOM:-0.9}" --wd "${WD:-0.00004}" \
  --smooth-alpha "${SMOOTH_ALPHA:-0.1}" --dropout-ratio "${DROPOUT_RATIO:-0.0}" \
  --rgb-mean "${RGB_MEAN:-0,0,0}" --rgb-scale "${RGB_SCALE:-1.0}" \
  --random-crop "${RANDOM_CROP:-0}" --random-mirror "${RANDOM_MIRROR:-1}" \
  --max-random-h "${MAX_RANDOM_H:-0}" --max-random-s "${MAX_RANDOM_S:-0}" --max-random-l "${MAX_RANDOM_L:-0}" \
  --top-k "${TOP_K:-5}" --disp-batches "${DISP_BATCHES:-100}" --seed "${SEED:-0}" \
  2>&1 | tee -a "$PREFIX-train.log"
