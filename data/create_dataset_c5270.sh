#!/usr/bin/env bash
# The picture-level split of M06 and M10 (the original's cdiscount_c5270_{train,val}.rec): every picture of
# train.bson, 95/5 by picture as the original's first converter drew it (data.split_pictures): 11,752,908
# training and 618,385 validation pictures on Kaggle's file. A product's pictures can land on both sides.
# Inputs: $DATA_DIR/train.bson and $DATA_DIR/category_names.csv. Outputs: $DATA_DIR/dataset_c5270/.
# Re-running skips a complete split (FORCE=1 redoes it); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh
source data/steps.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"  # folder with Kaggle's train.bson and category_names.csv
DATASET_DIR="$DATA_DIR/dataset_c5270"       # where the .rec files go
RANDOM_SEED=12648430                        # 0xC0FFEE: seeded once, for the shuffles and the draws
VAL_RATIO=0.05                              # each picture's chance to go to validation
BLOCK_SIZE=1000000                          # pictures per shuffled block, in file order

SKIP_FLAG=()
if [ "${SKIP_CORRUPT:-0}" = "1" ]; then SKIP_FLAG=(--skip-corrupt); fi
CATEGORY_CSV="$DATA_DIR/category_names.csv"
mkdir -p "$DATASET_DIR"

run_step "the picture split of train.bson" \
  "$DATASET_DIR/train.rec" "$DATASET_DIR/train.idx" "$DATASET_DIR/train.rec.json" \
  "$DATASET_DIR/valid.rec" "$DATASET_DIR/valid.idx" "$DATASET_DIR/valid.rec.json" \
  -- "$DATA_DIR/train.bson" "$CATEGORY_CSV" -- \
  python -m data.split_pictures --bson "$DATA_DIR/train.bson" --category-csv "$CATEGORY_CSV" \
  --out-train-rec "$DATASET_DIR/train.rec" --out-val-rec "$DATASET_DIR/valid.rec" \
  --random-seed "$RANDOM_SEED" --val-ratio "$VAL_RATIO" --block-size "$BLOCK_SIZE" "${SKIP_FLAG[@]}"
