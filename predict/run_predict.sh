#!/usr/bin/env bash
# The solution's final submission: 14 models with flip TTA, the MD5 `unique` override, extra
# outputs of the first 8 and 11 models; the sum over each product's pictures of all 14 models
# (e14.m1) then gets product-hash post-processing, as the solution submitted; checks the result.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or OUT_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"    # Kaggle's test.bson, category_names.csv, md5_dict_train.npz
MODEL_DIR="$(dir_from_env MODEL_DIR models)"   # MODEL_DIR/Mxx/Mxx-symbol.json and Mxx-00EE.params from train/Mxx.sh
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                  # GPU ids; GPUS= (empty): the CPU
OUT_DIR="$(dir_from_env OUT_DIR submissions)"          # every output of this script

BSON="$DATA_DIR/test.bson"
CATEGORY_CSV="$DATA_DIR/category_names.csv"
MD5_DICT="$DATA_DIR/md5_dict_train.npz"  # from the whole train.bson (data/create_train_md5_dict.sh)
# name:epoch in ensemble order; the first k form the write-up's ensembles (8: M07-M14, 11: M04-M14, 14: all)
MODELS="${MODELS:-M14:20 M13:13 M12:17 M11:15 M10:19 M09:15 M08:18 M07:15 M06:11 M05:15 M04:20 M03:13 M02:13 M01:23}"
ENSEMBLES="${ENSEMBLES:-8 11 14}"                      # extra outputs of the first k models
BATCH_SIZE="${BATCH_SIZE:-256}"                           # views per forward pass (over all GPUs)
# Each model's input (shape, resize, RGB mean and scale) is its checkpoint's (Mxx-input.json, written
# by training); set these only to override it for every model (needed for checkpoints without the file).
IMAGE_SHAPE="${IMAGE_SHAPE:-}"                            # network input C,H,W (the solution: 3,180,180)
RESIZE="${RESIZE:-}"                                      # squash to RxR first (the solution: 0, pictures as stored)
RGB_MEAN="${RGB_MEAN:-}"                                  # the solution: raw 0-255 RGB, 0,0,0
RGB_SCALE="${RGB_SCALE:-}"                                # the solution: 1.0
MULTI_VIEW="${MULTI_VIEW:-1}"                             # original + horizontal flip (more views lowered accuracy)
MD5_DICT_TYPE="${MD5_DICT_TYPE:-unique}"                  # one-hot where the picture's MD5 has a single category
NUM_PROCS="${NUM_PROCS:-8}"                              # preprocessing workers
OUTPUT="$OUT_DIR/submission.csv.gz"      # all models, m0 (product over pictures), as the original's OUTPUT
# + submission.e{k}.m0.csv.gz (product) and .e{k}.m1.csv.gz (sum) for each k of ENSEMBLES; the solution's file:
SUBMITTED="$OUT_DIR/submission.e$(wc -w <<< "$MODELS").m1.csv.gz"
OVERRIDES="$OUT_DIR/md5_product_overrides.csv"
FINAL="$OUT_DIR/submission_final.csv.gz" # what to upload

export DATA_DIR MODEL_DIR GPUS BSON CATEGORY_CSV MD5_DICT MODELS ENSEMBLES BATCH_SIZE IMAGE_SHAPE RESIZE RGB_MEAN \
  RGB_SCALE MULTI_VIEW MD5_DICT_TYPE NUM_PROCS OUTPUT SUBMITTED OVERRIDES FINAL
predict/predict_and_postprocess.sh
python -m predict.check_submission --bson "$BSON" --category-csv "$CATEGORY_CSV" "$FINAL"
echo "submission: $FINAL"
