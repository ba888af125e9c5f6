#!/usr/bin/env bash
# Shared body of create_dataset_{A,B,C}.sh: split train.bson by product, then convert both halves to .rec.
# Called with the dataset's settings in the environment (see those scripts); not meant to be run alone.
set -euo pipefail
: "${DATA_DIR:?}" "${DATASET_DIR:?}" "${SHUFFLE_SEED:?}"
FORCE_FLAG=()
if [ "${FORCE:-0}" = "1" ]; then FORCE_FLAG=(--force); fi
SKIP_FLAG=()
if [ "${SKIP_CORRUPT:-0}" = "1" ]; then SKIP_FLAG=(--skip-corrupt); fi
SPLIT_DIR="${SPLIT_DIR:-$DATASET_DIR}"
mkdir -p "$DATASET_DIR"

if [ "$SPLIT_DIR" = "$DATASET_DIR" ]; then
  python -m data.split_train_bson --input-bson "$DATA_DIR/train.bson" \
    --val-ratio "${VAL_RATIO:?}" --random-seed "${RANDOM_SEED:?}" \
    --save-train-bson "$DATASET_DIR/train_train.bson" --save-val-bson "$DATASET_DIR/train_valid.bson" \
    "${FORCE_FLAG[@]}" "${SKIP_FLAG[@]}"
fi

for part in train valid; do
  python -m data.bson2rec --bson "$SPLIT_DIR/train_${part}.bson" --out-rec "$DATASET_DIR/${part}.rec" \
    --category-csv "$DATA_DIR/category_names.csv" --shuffle-seed "$SHUFFLE_SEED" \
    ${BSON2REC_OPTIONS:-} "${FORCE_FLAG[@]}" "${SKIP_FLAG[@]}"
done
