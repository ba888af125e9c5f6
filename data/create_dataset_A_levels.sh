#!/usr/bin/env bash
# Not the original's (docs/beyond.md#hierarchical-heads): DATASET_A's records with a label vector each, the
# class id then its category's level-2 and level-1 group ids (data.bson2rec --level-labels), for
# train/beyond/B02_hierarchical_heads.sh (rwightman's hierarchical heads). The same product split, pictures
# and record order as DATASET_A's; only the labels differ. Needs create_dataset_A.sh first (its split BSONs).
# Outputs: $DATA_DIR/dataset_A_levels/{train,valid}.rec (+ .idx, .rec.json).
# Re-running skips the steps already complete (FORCE=1 redoes them); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh
source data/steps.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"  # folder with Kaggle's train.bson and category_names.csv
DATASET_DIR="$DATA_DIR/dataset_A_levels"    # where the .rec files go
SPLIT_DIR="$DATA_DIR/dataset_A"             # reuse DATASET_A's split BSONs (seed 0xC0FFEE)
SHUFFLE_SEED=12648430                       # record order: DATASET_A's (Python random, as the original)
BSON2REC_OPTIONS="--level-labels"           # a label vector per record: class id, level-2 id, level-1 id

require_files "$SPLIT_DIR/train_train.bson:run data/create_dataset_A.sh first" \
  "$SPLIT_DIR/train_valid.bson:run data/create_dataset_A.sh first"
export DATA_DIR DATASET_DIR SPLIT_DIR SHUFFLE_SEED BSON2REC_OPTIONS
data/split_and_convert.sh
