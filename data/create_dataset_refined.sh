#!/usr/bin/env bash
# The refined set of M01-M03 (the original's refined_train.rec, 7,310,313 pictures, and refined_val.rec):
# DATASET_A's product split; training keeps the pictures whose MD5 has a single category in the whole
# train.bson, each MD5 once; validation keeps each MD5 once (the same records as dataset_C/valid.rec).
# Needs data/create_dataset_A.sh and data/create_train_md5_dict.sh first. Outputs: $DATA_DIR/dataset_refined/.
# Re-running skips the steps already complete (FORCE=1 redoes them); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh
source data/steps.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"  # folder with Kaggle's train.bson and category_names.csv
DATASET_DIR="$DATA_DIR/dataset_refined"     # where the .rec files go
SPLIT_DIR="$DATA_DIR/dataset_A"             # DATASET_A's split BSONs (seed 0xC0FFEE), as the original's refined_*.bson
MD5_DICT="$DATA_DIR/md5_dict_train.npz"     # MD5 dictionary of the whole train.bson: the single-category filter
SHUFFLE_SEED=12648430                       # record order (Python random, as the original)
TRAIN_OPTIONS="--md5-dict $MD5_DICT --unique-md5"  # single-category MD5s, each once
VALID_OPTIONS="--unique-md5"                       # each MD5 once (no category filter, as the original)

require_files "$SPLIT_DIR/train_train.bson:run data/create_dataset_A.sh first" \
  "$MD5_DICT:run data/create_train_md5_dict.sh first"
SKIP_FLAG=()
if [ "${SKIP_CORRUPT:-0}" = "1" ]; then SKIP_FLAG=(--skip-corrupt); fi
CATEGORY_CSV="$DATA_DIR/category_names.csv"
mkdir -p "$DATASET_DIR"

for part in train valid; do
  options_name="${part^^}_OPTIONS"
  inputs=("$SPLIT_DIR/train_${part}.bson" "$CATEGORY_CSV")
  if [ "$part" = train ]; then inputs+=("$MD5_DICT"); fi
  # the options are word-split on purpose: several flags in one variable
  # shellcheck disable=SC2086
  run_step "the conversion of train_${part}.bson" "$DATASET_DIR/${part}.rec" "$DATASET_DIR/${part}.idx" \
    "$DATASET_DIR/${part}.rec.json" \
    -- "${inputs[@]}" -- \
    python -m data.bson2rec --bson "$SPLIT_DIR/train_${part}.bson" --out-rec "$DATASET_DIR/${part}.rec" \
    --category-csv "$CATEGORY_CSV" --shuffle-seed "$SHUFFLE_SEED" ${!options_name} "${SKIP_FLAG[@]}"
done
