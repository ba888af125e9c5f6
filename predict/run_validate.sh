#!/usr/bin/env bash
# The final run on DATASET_A's held-out 5% (labelled), with the dictionary of its training part
# only: prints the accuracy of each output, and of the solution's choice (the sum over pictures of
# all models, eN.m1) before and after product-hash post-processing. Then the original's MD5 experiment,
# every --md5-dict-type x both means over the pictures (m0 product / geometric, m1 sum / arithmetic),
# from the probability store this run keeps: no second forward pass.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or OUT_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"    # dataset_A/ from data/create_dataset_A.sh, category_names.csv
MODEL_DIR="$(dir_from_env MODEL_DIR models)"   # MODEL_DIR/Mxx/Mxx-symbol.json and Mxx-00EE.params from train/Mxx.sh
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                  # GPU ids; GPUS= (empty): the CPU
OUT_DIR="$(dir_from_env OUT_DIR validation)"         # every output of this script

BSON="$DATA_DIR/dataset_A/train_valid.bson"
CATEGORY_CSV="$DATA_DIR/category_names.csv"
MD5_DICT="$DATA_DIR/dataset_A/md5_dict_train_train.npz"  # no held-out picture leaks into the dictionary
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
MULTI_VIEW="${MULTI_VIEW:-1}"                             # original + horizontal flip
MD5_DICT_TYPE="${MD5_DICT_TYPE:-unique}"                  # one-hot where the picture's MD5 has a single category
NUM_PROCS="${NUM_PROCS:-8}"                              # preprocessing workers
OUTPUT="$OUT_DIR/valid.csv"              # all models, m0 (product over pictures); + valid.e{k}.m{0,1}.csv
SUBMITTED="$OUT_DIR/valid.e$(wc -w <<< "$MODELS").m1.csv"  # all models, m1 (sum): the solution's choice
OVERRIDES="$OUT_DIR/md5_product_overrides.csv"
FINAL="$OUT_DIR/valid_final.csv"
SUMMARY="$OUT_DIR/per_category.csv"      # per-category accuracy and most-confused category
STORE="$OUT_DIR/probs"                   # every picture's top-K probabilities (forwards the known pictures too)
MD5_SWEEP="${MD5_SWEEP-unique majority l1 l2 softmax none}"  # the original's experiment; empty: no sweep
EXTRA_PREDICT_ARGS="--print-summary $SUMMARY --save-probs $STORE"

export DATA_DIR MODEL_DIR GPUS BSON CATEGORY_CSV MD5_DICT MODELS ENSEMBLES BATCH_SIZE IMAGE_SHAPE RESIZE RGB_MEAN \
  RGB_SCALE MULTI_VIEW MD5_DICT_TYPE NUM_PROCS OUTPUT SUBMITTED OVERRIDES FINAL EXTRA_PREDICT_ARGS
predict/predict_and_postprocess.sh
python -m predict.score_submission --bson "$BSON" --label "all models, m0 (product)" \
  --label "all models, m1 (sum)" --label "m1 + product hashes" "$OUTPUT" "$SUBMITTED" "$FINAL"

NUM_MODELS="$(wc -w <<< "$MODELS")"
SWEEP_ENSEMBLES="$ENSEMBLES"
if [[ " $ENSEMBLES " != *" $NUM_MODELS "* ]]; then SWEEP_ENSEMBLES+=" $NUM_MODELS"; fi
for md5_type in $MD5_SWEEP; do
  echo "--md5-dict-type $md5_type, from $STORE (m0: product over the pictures, the original's geometric mean;" \
    "m1: sum, its arithmetic mean):"
  python -m predict.ensemble --probs "$STORE" --category-csv "$CATEGORY_CSV" --md5-dict "$MD5_DICT" \
    --md5-dict-type "$md5_type" --ensembles $SWEEP_ENSEMBLES --output ""
done
