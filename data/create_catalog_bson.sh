#!/usr/bin/env bash
# Your own product catalog in Kaggle's files: CATALOG (a CSV product_id,category,pictures or a folder
# CATEGORY/PRODUCT_ID/pictures) -> $DATA_DIR/train.bson, test.bson, category_names.csv and
# test_ground_truth.csv, so that data/create_dataset_A.sh, the model scripts and predict/run_predict.sh
# run on DATA_DIR unchanged. See docs/catalog.md and `python -m data.catalog_to_bson --help`.
#   CATALOG=my_shop/catalog.csv DATA_DIR=my_shop/data HOLDOUT_FRACTION=0.1 data/create_catalog_bson.sh
# Bad rows are printed one per line and nothing is written, unless SKIP_BAD_ROWS=1 (writes the good ones).
set -euo pipefail
CALLER_DIR="$PWD"  # relative CATALOG, DATA_DIR, CATEGORY_CSV and PICTURE_ROOT are taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

: "${CATALOG:?set CATALOG to your catalog CSV or folder}"
CATALOG="$(dir_from_env CATALOG "")"               # the catalog: a CSV file or a category/product folder
DATA_DIR="$(dir_from_env DATA_DIR data_dir)"       # where the Kaggle files go (the numbered scripts' DATA_DIR)
CATEGORY_CSV="${CATEGORY_CSV:+$(dir_from_env CATEGORY_CSV "")}"  # empty: number the catalog's category names
PICTURE_ROOT="${PICTURE_ROOT:+$(dir_from_env PICTURE_ROOT "")}"  # empty: relative pictures start at the CSV's folder
UNLABELLED_FOLDER="${UNLABELLED_FOLDER:-_test}"    # folder catalog: the category folder of products without category
HOLDOUT_FRACTION="${HOLDOUT_FRACTION:-0}"          # labelled products moved to test.bson, truth in test_ground_truth.csv
HOLDOUT_SEED="${HOLDOUT_SEED:-0}"                  # seed of the held-out choice
MAX_PICTURES="${MAX_PICTURES:-4}"                  # pictures kept per product (Kaggle: 4); 0: all
PICTURE_SIZE="${PICTURE_SIZE:-180}"                # other sizes fitted into this square on white (Kaggle: 180); 0: keep
JPEG_QUALITY="${JPEG_QUALITY:-90}"                 # quality of re-encoded pictures (JPEGs are kept byte for byte)
SKIP_BAD_ROWS="${SKIP_BAD_ROWS:-0}"                # 1: write the good products and report the bad rows
FORCE="${FORCE:-0}"                                # 1: overwrite existing outputs

OPTIONAL=()
if [ -n "$CATEGORY_CSV" ]; then OPTIONAL+=(--category-csv "$CATEGORY_CSV"); fi
if [ -n "$PICTURE_ROOT" ]; then OPTIONAL+=(--picture-root "$PICTURE_ROOT"); fi
if [ "$SKIP_BAD_ROWS" = "1" ]; then OPTIONAL+=(--skip-bad-rows); fi
if [ "$FORCE" = "1" ]; then OPTIONAL+=(--force); fi

python -m data.catalog_to_bson --catalog "$CATALOG" --out-dir "$DATA_DIR" \
  --unlabelled-folder "$UNLABELLED_FOLDER" --holdout-fraction "$HOLDOUT_FRACTION" --holdout-seed "$HOLDOUT_SEED" \
  --max-pictures "$MAX_PICTURES" --picture-size "$PICTURE_SIZE" --jpeg-quality "$JPEG_QUALITY" "${OPTIONAL[@]}"
