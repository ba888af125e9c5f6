#!/usr/bin/env bash
# DATASET_C: DATASET_A's product split with repeated images removed (first occurrence of each MD5 kept),
# which cuts training time. Needs create_dataset_A.sh first. Outputs: $DATA_DIR/dataset_C/.
# Re-running skips the steps already complete (FORCE=1 redoes them); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"  # folder with Kaggle's train.bson and category_names.csv
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
