#!/usr/bin/env bash
# Where the validation prediction of predict/run_validate.sh goes wrong: accuracy per level-1
# category (table, CSV and bar chart) and a contact sheet of wrongly predicted products.
# Extra arguments go to predict.analyze (e.g. --force, --save-incorrect DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${DATA_DIR:-data_dir}"        # dataset_A/train_valid.bson, category_names.csv
OUT_DIR="${OUT_DIR:-validation}"        # run_validate.sh's output folder

BSON="$DATA_DIR/dataset_A/train_valid.bson"
CATEGORY_CSV="$DATA_DIR/category_names.csv"
PREDICT_CSV="${PREDICT_CSV:-$OUT_DIR/valid.csv}"  # all models, before post-processing (valid_final.csv: after)
ANALYSIS_DIR="${ANALYSIS_DIR:-$OUT_DIR/analysis}"
SAVE_CUT="${SAVE_CUT:-100}"              # wrong products on the contact sheet
SHEET_COLUMNS="${SHEET_COLUMNS:-10}"     # tiles per row of the contact sheet

python -m predict.analyze --predict-csv "$PREDICT_CSV" --bson "$BSON" --category-csv "$CATEGORY_CSV" \
  --out-dir "$ANALYSIS_DIR" --save-cut "$SAVE_CUT" --columns "$SHEET_COLUMNS" "$@"
