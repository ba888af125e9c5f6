#!/usr/bin/env bash
# Shared body of create_dataset_{A,B,C}.sh: split train.bson by product, then convert both halves to .rec.
# Called with the dataset's settings in the environment (see those scripts); not meant to be run alone.
# A step whose outputs are already complete is skipped (data/steps.sh): re-running after a failed
# conversion does not redo the split. FORCE=1 redoes every step; SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # the calling script passes DATA_DIR, DATASET_DIR and SPLIT_DIR absolute or repo-relative
cd "$(dirname "$0")/.."
source scripts/paths.sh
source data/steps.sh
: "${DATA_DIR:?}" "${DATASET_DIR:?}" "${SHUFFLE_SEED:?}"
DATA_DIR="$(dir_from_env DATA_DIR data_dir)"
DATASET_DIR="$(dir_from_env DATASET_DIR "")"
SPLIT_DIR="$(dir_from_env SPLIT_DIR "$DATASET_DIR")"
SKIP_FLAG=()
if [ "${SKIP_CORRUPT:-0}" = "1" ]; then SKIP_FLAG=(--skip-corrupt); fi
CATEGORY_CSV="$DATA_DIR/category_names.csv"
mkdir -p "$DATASET_DIR"

if [ "$SPLIT_DIR" = "$DATASET_DIR" ]; then
  run_step "the split of $DATA_DIR/train.bson" "$DATASET_DIR/train_train.bson" "$DATASET_DIR/train_valid.bson" \
    -- "$DATA_DIR/train.bson" -- \
    python -m data.split_train_bson --bson "$DATA_DIR/train.bson" \
    --val-ratio "${VAL_RATIO:?}" --random-seed "${RANDOM_SEED:?}" \
    --save-train-bson "$DATASET_DIR/train_train.bson" --save-val-bson "$DATASET_DIR/train_valid.bson" \
    "${SKIP_FLAG[@]}"
fi

for part in train valid; do
  # BSON2REC_OPTIONS is word-split on purpose: several flags in one variable
  # shellcheck disable=SC2086
  run_step "the conversion of train_${part}.bson" "$DATASET_DIR/${part}.rec" "$DATASET_DIR/${part}.idx" \
    "$DATASET_DIR/${part}.rec.json" \
    -- "$SPLIT_DIR/train_${part}.bson" "$CATEGORY_CSV" -- \
    python -m data.bson2rec --bson "$SPLIT_DIR/train_${part}.bson" --out-rec "$DATASET_DIR/${part}.rec" \
    --category-csv "$CATEGORY_CSV" --shuffle-seed "$SHUFFLE_SEED" \
    ${BSON2REC_OPTIONS:-} "${SKIP_FLAG[@]}"
done
