#!/usr/bin/env bash
# Not the original's (docs/beyond.md#multi-image-mosaic-models): DATASET_A's split as product mosaics, one record
# per product, its 1-4 pictures tiled 2x2 into one picture (data.bson2rec --mosaic, data/mosaic.py), for
# train/beyond/B03_mosaic.sh (bestfitting's multi-image models). The same product split as DATASET_A; products in
# a shuffled order of the same seed. Needs create_dataset_A.sh first (its split BSONs).
# Outputs: $DATA_DIR/dataset_A_mosaic/{train,valid}.rec (+ .idx, .rec.json: mosaic_size, mosaic_fill).
# Re-running skips the steps already complete (FORCE=1 redoes them); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh
source data/steps.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"  # folder with Kaggle's train.bson and category_names.csv
DATASET_DIR="$DATA_DIR/dataset_A_mosaic"    # where the .rec files go
SPLIT_DIR="$DATA_DIR/dataset_A"             # reuse DATASET_A's split BSONs (seed 0xC0FFEE)
SHUFFLE_SEED=12648430                       # product order: DATASET_A's seed (Python random, as the original)
MOSAIC_SIZE="${MOSAIC_SIZE:-360}"           # SxS mosaics of S/2 tiles (360: 180x180 pictures at their size)
MOSAIC_FILL="${MOSAIC_FILL:-repeat}"        # the empty tiles of a product of fewer than 4 pictures: repeat or blank
BSON2REC_OPTIONS="--mosaic --mosaic-size $MOSAIC_SIZE --mosaic-fill $MOSAIC_FILL"

require_files "$SPLIT_DIR/train_train.bson:run data/create_dataset_A.sh first" \
  "$SPLIT_DIR/train_valid.bson:run data/create_dataset_A.sh first"
export DATA_DIR DATASET_DIR SPLIT_DIR SHUFFLE_SEED BSON2REC_OPTIONS
data/split_and_convert.sh
