#!/usr/bin/env bash
# Where the validation prediction of predict/run_validate.sh goes wrong: accuracy per level-1
# category (table, CSV and bar chart) and a contact sheet of wrongly predicted products.
# Extra arguments go to predict.analyze (e.g. --force, --save-incorrect DIR).
set -euo pipefail
CALLER_DIR="$PWD"  # relative folders and files below are taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"        # dataset_A/train_valid.bson, category_names.csv
OUT_DIR="$(dir_from_env OUT_DIR validation)"        # run_validate.sh's output folder

BSON="$DATA_DIR/dataset_A/train_valid.bson"
CATEGORY_CSV="$DATA_DIR/category_names.csv"
PREDICT_CSV="$(dir_from_env PREDICT_CSV "$OUT_DIR/valid.csv")"  # all models, before post-processing (valid_final.csv: after)
ANALYSIS_DIR="$(dir_from_env ANALYSIS_DIR "$OUT_DIR/analysis")"  # the analysis outputs
SAVE_CUT="${SAVE_CUT:-100}"              # wrong products on the contact sheet
SHEET_COLUMNS="${SHEET_COLUMNS:-10}"     # tiles per row of the contact sheet

python -m predict.analyze --predict-csv "$PREDICT_CSV" --bson "$BSON" --category-csv "$CATEGORY_CSV" \
  --out-dir "$ANALYSIS_DIR" --save-cut "$SAVE_CUT" --columns "$SHEET_COLUMNS" "$@"
