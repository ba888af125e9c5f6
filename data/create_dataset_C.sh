#!/usr/bin/env bash
# DATASET_C: DATASET_A's product split with repeated images removed (first occurrence of each MD5 kept),
# which cuts training time. Needs create_dataset_A.sh first. Outputs: $DATA_DIR/dataset_C/.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${DATA_DIR:-data_dir}"            # folder with Kaggle's train.bson and category_names.csv
DATASET_DIR="$DATA_DIR/dataset_C"           # where the .rec files go
SPLIT_DIR="$DATA_DIR/dataset_A"             # reuse DATASET_A's split BSONs (seed 0xC0FFEE)
SHUFFLE_SEED=12648430                       # record order (Python random, as the original)
BSON2REC_OPTIONS="--unique-md5"             # keep each image MD5 once

if [ ! -f "$SPLIT_DIR/train_train.bson" ]; then
  echo "error: $SPLIT_DIR/train_train.bson not found: run data/create_dataset_A.sh first" >&2
  exit 2
fi
export DATA_DIR DATASET_DIR SPLIT_DIR SHUFFLE_SEED BSON2REC_OPTIONS
data/split_and_convert.sh
