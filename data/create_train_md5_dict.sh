#!/usr/bin/env bash
# MD5 dictionaries (image MD5 and product hash -> {category_id: count}) used at prediction time:
# one from the whole train.bson (for the test submission) and one from DATASET_A's training split
# (for honest validation on its held-out products).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${DATA_DIR:-data_dir}"                          # folder with Kaggle's train.bson
FULL_TRAIN_BSON="$DATA_DIR/train.bson"                    # dictionary for predicting test.bson
FULL_DICT="$DATA_DIR/md5_dict_train.npz"
SPLIT_TRAIN_BSON="$DATA_DIR/dataset_A/train_train.bson"   # dictionary for validating on dataset_A
SPLIT_DICT="$DATA_DIR/dataset_A/md5_dict_train_train.npz"

FORCE_FLAG=()
if [ "${FORCE:-0}" = "1" ]; then FORCE_FLAG=(--force); fi
python -m data.bson_md5_dict --bson "$FULL_TRAIN_BSON" --out "$FULL_DICT" "${FORCE_FLAG[@]}"
if [ -f "$SPLIT_TRAIN_BSON" ]; then
  python -m data.bson_md5_dict --bson "$SPLIT_TRAIN_BSON" --out "$SPLIT_DICT" "${FORCE_FLAG[@]}"
fi
