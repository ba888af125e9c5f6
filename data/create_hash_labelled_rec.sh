#!/usr/bin/env bash
# Not the original's (docs/beyond.md#training-on-hash-labelled-test-pictures): creafz's hash-labelled test
# pictures as an extra training .rec for train/beyond/B01_hash_labelled.sh. A test product whose pictures
# the dictionary of the whole train.bson answers with one category gets it; its pictures new to train.bson
# are written with that label (data.hash_labelled_rec). No product of train.bson, from which every
# validation split comes, is written. Needs data/create_train_md5_dict.sh first.
# Output: $DATA_DIR/dataset_A/test_hash_labelled.rec (+ .idx, .rec.json).
# Re-running skips a complete output (FORCE=1 redoes it); SKIP_CORRUPT=1 skips unreadable documents.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh
source data/steps.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"        # Kaggle's test.bson, train.bson and category_names.csv
TEST_BSON="$DATA_DIR/test.bson"                     # the pictures to label
MD5_DICT="$DATA_DIR/md5_dict_train.npz"             # MD5 dictionary of the whole train.bson: the labels
EXCLUDE_BSON="$DATA_DIR/train.bson"                 # no record may share a product _id with a validation split
OUT_REC="$DATA_DIR/dataset_A/test_hash_labelled.rec"  # beside the training .rec it is read with
CATEGORY_CSV="$DATA_DIR/category_names.csv"         # the training .rec's categories: their labels must agree
SHUFFLE_SEED=12648430                               # record order (Python random, as data.bson2rec)
OPTIONS="--pictures new"                            # creafz's: the pictures new to train.bson of resolved products

require_files "$TEST_BSON:put Kaggle's test.bson in DATA_DIR" "$EXCLUDE_BSON:put Kaggle's train.bson in DATA_DIR" \
  "$MD5_DICT:run data/create_train_md5_dict.sh first"
SKIP_FLAG=()
if [ "${SKIP_CORRUPT:-0}" = "1" ]; then SKIP_FLAG=(--skip-corrupt); fi
mkdir -p "$(dirname "$OUT_REC")"

# the options are word-split on purpose: several flags in one variable
# shellcheck disable=SC2086
run_step "the hash-labelled test pictures" "$OUT_REC" "${OUT_REC%.rec}.idx" "$OUT_REC.json" \
  -- "$TEST_BSON" "$MD5_DICT" "$CATEGORY_CSV" "$EXCLUDE_BSON" -- \
  python -m data.hash_labelled_rec --bson "$TEST_BSON" --md5-dict "$MD5_DICT" --category-csv "$CATEGORY_CSV" \
  --out-rec "$OUT_REC" --exclude-bson "$EXCLUDE_BSON" --shuffle-seed "$SHUFFLE_SEED" $OPTIONS "${SKIP_FLAG[@]}"
