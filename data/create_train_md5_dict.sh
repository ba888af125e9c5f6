#!/usr/bin/env bash
# MD5 dictionaries (image MD5 and product hash -> {category_id: count}) used at prediction time:
# one from the whole train.bson (for the test submission) and one from DATASET_A's training split
# (for honest validation on its held-out products).
# Re-running skips a dictionary already complete (FORCE=1 rebuilds it); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh
source data/steps.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"              # folder with Kaggle's train.bson
FULL_TRAIN_BSON="$DATA_DIR/train.bson"                    # dictionary for predicting test.bson
FULL_DICT="$DATA_DIR/md5_dict_train.npz"
SPLIT_TRAIN_BSON="$DATA_DIR/dataset_A/train_train.bson"   # dictionary for validating on dataset_A
SPLIT_DICT="$DATA_DIR/dataset_A/md5_dict_train_train.npz"

SKIP_FLAG=()
if [ "${SKIP_CORRUPT:-0}" = "1" ]; then SKIP_FLAG=(--skip-corrupt); fi
run_step "the dictionary of train.bson" "$FULL_DICT" -- "$FULL_TRAIN_BSON" -- \
  python -m data.bson_md5_dict --bson "$FULL_TRAIN_BSON" --out "$FULL_DICT" "${SKIP_FLAG[@]}"
if [ -f "$SPLIT_TRAIN_BSON" ]; then
  run_step "the dictionary of dataset_A's training split" "$SPLIT_DICT" -- "$SPLIT_TRAIN_BSON" -- \
    python -m data.bson_md5_dict --bson "$SPLIT_TRAIN_BSON" --out "$SPLIT_DICT" "${SKIP_FLAG[@]}"
else
  echo "no $SPLIT_TRAIN_BSON: only the dictionary of train.bson (run data/create_dataset_A.sh first for the other)" >&2
fi
