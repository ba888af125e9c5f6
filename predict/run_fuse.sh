#!/usr/bin/env bash
# Not the original's: learned fusion (predict.fuse), fitted on the validation split's probability store,
# applied to the test set's, then the MD5 override and product-hash post-processing as the solution did.
# The stores come from the faithful scripts, which keep them when asked (predict.fuse names a missing one):
#   predict/run_validate.sh                                        (keeps OUT_DIR/probs: VALID_STORE)
#   EXTRA_PREDICT_ARGS="--save-probs submissions/probs" predict/run_predict.sh          (TEST_STORE)
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, VALID_STORE, TEST_STORE or OUT_DIR is taken from where the script was run
cd "$(dirname "$0")/.."
source scripts/paths.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"              # test.bson, category_names.csv, md5_dict_train.npz
VALID_STORE="$(dir_from_env VALID_STORE validation/probs)"  # labelled: the validation split's store
TEST_STORE="$(dir_from_env TEST_STORE submissions/probs)"   # the same models in the same order, on test.bson
OUT_DIR="$(dir_from_env OUT_DIR submissions_fused)"       # every output of this script

BSON="$DATA_DIR/test.bson"
CATEGORY_CSV="$DATA_DIR/category_names.csv"
MD5_DICT="$DATA_DIR/md5_dict_train.npz"   # from the whole train.bson (data/create_train_md5_dict.sh)
MD5_DICT_TYPE="${MD5_DICT_TYPE:-unique}"  # applied after the fusion, as the original's order
FUSE_METHOD="${FUSE_METHOD:-weights}"     # predict.fuse --method
PER_COUNT="${PER_COUNT:-1}"               # 1: weights per count of usable pictures (1, 2, 3, 4+), as outrunner
FREQUENT_CLASSES="${FREQUENT_CLASSES:-2000}"  # weights for the most frequent classes and the rest, as NighTurs; 0: one group
CANDIDATES="${CANDIDATES:-32}"            # classes per product the fit scores
ITERATIONS="${ITERATIONS:-300}"           # full-batch Adam steps
FOLDS="${FOLDS:-5}"                       # k of the k-fold estimate printed before the fit (0: none)
SEED="${SEED:-0}"                         # seed of the folds
FUSION="$OUT_DIR/fusion"                  # writes fusion-fuse.json
OUTPUT="$OUT_DIR/submission_fused.csv.gz" # fused, product over the pictures (+ .fused.m1: their sum)
OVERRIDES="$OUT_DIR/md5_product_overrides.csv"
FINAL="$OUT_DIR/submission_fused_final.csv.gz"  # what to upload

FORCE_FLAG=()
if [ "${FORCE:-0}" = "1" ]; then FORCE_FLAG=(--force); fi
COUNT_FLAG=()
if [ "$PER_COUNT" = "1" ]; then COUNT_FLAG=(--per-count); fi
mkdir -p "$OUT_DIR"

python -m predict.fuse train --probs "$VALID_STORE" --category-csv "$CATEGORY_CSV" --out "$FUSION" \
  --method "$FUSE_METHOD" "${COUNT_FLAG[@]}" --frequent-classes "$FREQUENT_CLASSES" --candidates "$CANDIDATES" \
  --iterations "$ITERATIONS" --folds "$FOLDS" --seed "$SEED" "${FORCE_FLAG[@]}"
python -m predict.fuse apply --fuse "$FUSION-fuse.json" --probs "$TEST_STORE" --category-csv "$CATEGORY_CSV" \
  --md5-dict "$MD5_DICT" --md5-dict-type "$MD5_DICT_TYPE" --output "$OUTPUT" "${FORCE_FLAG[@]}"
python -m predict.md5_predict --md5-dict "$MD5_DICT" --bson "$BSON" --output "$OVERRIDES" "${FORCE_FLAG[@]}"
python -m predict.postprocess_product --src "$OUTPUT" --md5 "$OVERRIDES" --output "$FINAL" "${FORCE_FLAG[@]}"
python -m predict.check_submission --bson "$BSON" --category-csv "$CATEGORY_CSV" "$FINAL"
echo "submission: $FINAL"
