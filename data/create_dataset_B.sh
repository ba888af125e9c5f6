#!/usr/bin/env bash
# DATASET_B: like DATASET_A but the product split uses seed 1 (other validation products).
# Inputs: $DATA_DIR/train.bson and $DATA_DIR/category_names.csv. Outputs: $DATA_DIR/dataset_B/.
# Re-running skips the steps already complete (FORCE=1 redoes them); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"  # folder with Kaggle's train.bson and category_names.csv
DATASET_DIR="$DATA_DIR/dataset_B"           # where the split BSONs and .rec files go
RANDOM_SEED=1                               # 0x1: the product split of DATASET_B
VAL_RATIO=0.05                              # fraction of products for validation
SHUFFLE_SEED=12648430                       # record order: the original shuffled every dataset with 0xC0FFEE
BSON2REC_OPTIONS=""                         # all images

export DATA_DIR DATASET_DIR RANDOM_SEED VAL_RATIO SHUFFLE_SEED BSON2REC_OPTIONS
data/split_and_convert.sh
