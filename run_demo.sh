#!/usr/bin/env bash
# The whole job end to end on a generated demo dataset (Kaggle's formats, made-up pictures):
# make the data, split it into DATASET_A and DATASET_C, build the MD5 dictionaries, plot the
# category distribution, train two small CNNs of different families and fine-tune one of them
# with a new classifier, predict the test set with the ensemble (flip TTA, MD5 overrides,
# product-hash post-processing), score each technique against the demo's ground truth, and
# end with a valid submission file. Sets up .venv on first use. BEYOND=B03 adds one model that is not the
# original's: product mosaics (train/demo/D04_mosaic.sh, the demo-sized train/beyond/B03_mosaic.sh), predicted
# alone and as a fourth model of the ensemble (docs/beyond.md).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DEMO_DIR or VENV_DIR is taken from where the script was run
cd "$(dirname "$0")"
source scripts/paths.sh

DEMO_DIR="$(dir_from_env DEMO_DIR demo_data)"  # generated data and everything made from it (re-created each run)
NUM_CATEGORIES="${NUM_CATEGORIES:-40}"              # demo categories (Kaggle: 5270)
NUM_TRAIN_PRODUCTS="${NUM_TRAIN_PRODUCTS:-4000}"    # demo train.bson products (Kaggle: 7,069,896)
NUM_TEST_PRODUCTS="${NUM_TEST_PRODUCTS:-800}"       # demo test.bson products (Kaggle: 1,768,182)
DEMO_SEED=0                                         # seed of the generator
# Training: the demo's model scripts train/demo/D01.sh (DenseNet), D02.sh (DPN) and D03.sh (D01
# fine-tuned with a new classifier), scaled down for 2 CPU cores; their headers hold the settings.
EPOCHS_1="${EPOCHS_1:-3}"              # epochs of D01
EPOCHS_2="${EPOCHS_2:-2}"              # epochs of D02
FINETUNE_EPOCHS="${FINETUNE_EPOCHS:-1}"  # epochs of D03, the fine-tune from D01's last checkpoint
BEYOND="${BEYOND:-}"                   # B03: also train and predict D04, product mosaics (not the original's)
EPOCHS_4="${EPOCHS_4:-2}"              # epochs of D04 (BEYOND=B03)
DEMO_MOSAIC_SIZE=128                   # D04's mosaics: 2x2 tiles of D01's 64x64 input
MODEL_DIR="$DEMO_DIR/models"
# Prediction: predict/run_predict.sh, the solution's final run, with the demo's models; each model's
# input comes from its checkpoint (Dxx-input.json).
PREDICT_BATCH_SIZE=128                 # views per forward pass
NUM_PROCS=1                            # preprocessing workers (2 cores: one for them, one for the models)
MD5_DICT_TYPE=unique                   # one-hot where a picture's MD5 has a single category
SUB_DIR="$DEMO_DIR/submissions"

# The demo folder is the demo's own: refuse to overwrite a folder it did not make.
MARKER="$DEMO_DIR/.cdiscount_demo"
if [ -e "$DEMO_DIR" ] && [ ! -e "$MARKER" ] && [ -n "$(ls -A "$DEMO_DIR")" ]; then
  echo "error: $DEMO_DIR exists and was not made by run_demo.sh; set DEMO_DIR to another folder" >&2
  exit 2
fi
case "$BEYOND" in
  ""|B03) ;;
  *) echo "error: BEYOND=$BEYOND: the demo runs B03 (product mosaics, train/demo/D04_mosaic.sh) or nothing beyond" \
       "the original" >&2
     exit 2 ;;
esac
mkdir -p "$DEMO_DIR" && touch "$MARKER"
source scripts/ensure_venv.sh  # after the check above, which needs no venv
ensure_venv
export DATA_DIR="$DEMO_DIR" FORCE=1

step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

step "1/11 generate demo data"
python -m data.make_demo_data --out-dir "$DEMO_DIR" --num-categories "$NUM_CATEGORIES" \
  --num-train-products "$NUM_TRAIN_PRODUCTS" --num-test-products "$NUM_TEST_PRODUCTS" --seed "$DEMO_SEED" --force

step "2/11 DATASET_A: split 95/5 with seed 0xC0FFEE, convert to .rec"
data/create_dataset_A.sh

step "3/11 DATASET_C: DATASET_A without repeated images"
data/create_dataset_C.sh

step "4/11 MD5 dictionaries"
data/create_train_md5_dict.sh

step "5/11 category distribution"
python -m data.plot_category_distribution --bson "$DEMO_DIR/train.bson" \
  --out "$DEMO_DIR/category_distribution.png" --force

# The machine settings every model script passes on (train/run_model.sh)
export MODEL_DIR EPOCHS_1 EPOCHS_2 FINETUNE_EPOCHS EPOCHS_4 GPUS= BN_GROUPS= DATA_NTHREADS=2 DISP_BATCHES=50

step "6/11 train/demo/D01.sh: a DenseNet on DATASET_A"
train/demo/D01.sh

step "7/11 train/demo/D02.sh: a DPN on DATASET_A"
train/demo/D02.sh

step "8/11 train/demo/D03.sh: fine-tune D01's checkpoint with a new classifier"
train/demo/D03.sh

step "9/11 predict test.bson with predict/run_predict.sh: D01 alone and the ensemble, without and with flip TTA and the MD5 override"
# ensemble order: ENSEMBLES=1 is D01 alone; the last run adds the sum over a product's pictures
# (.e3.m1), which the solution submitted, then product-hash post-processing and the checks
export MODELS="D01:$EPOCHS_1 D02:$EPOCHS_2 D03:$FINETUNE_EPOCHS" BATCH_SIZE="$PREDICT_BATCH_SIZE" NUM_PROCS
MULTI_VIEW=0 MD5_DICT_TYPE=none ENSEMBLES=1 OUT_DIR="$SUB_DIR/plain" predict/run_predict.sh
MULTI_VIEW=1 MD5_DICT_TYPE=none ENSEMBLES=3 OUT_DIR="$SUB_DIR/flip" predict/run_predict.sh
step "10/11 the same with the MD5 override ($MD5_DICT_TYPE), product-hash post-processing, checked"
# keeps the test pictures' probabilities for step 11 (the outputs are the same with or without)
MULTI_VIEW=1 MD5_DICT_TYPE="$MD5_DICT_TYPE" ENSEMBLES=3 OUT_DIR="$SUB_DIR/final" \
  EXTRA_PREDICT_ARGS="--save-probs $SUB_DIR/final/probs" predict/run_predict.sh

step "11/11 not the original's: learned fusion weights, fitted on the validation split (predict/run_fuse.sh)"
MULTI_VIEW=1 ENSEMBLES=3 MD5_SWEEP= OUT_DIR="$DEMO_DIR/validation" predict/run_validate.sh
VALID_STORE="$DEMO_DIR/validation/probs" TEST_STORE="$SUB_DIR/final/probs" OUT_DIR="$SUB_DIR/fused" \
  MD5_DICT_TYPE="$MD5_DICT_TYPE" FREQUENT_CLASSES=0 predict/run_fuse.sh

SCORED=("$SUB_DIR/plain/submission.e1.m0.csv.gz" "$SUB_DIR/plain/submission.csv.gz" "$SUB_DIR/flip/submission.csv.gz"
  "$SUB_DIR/final/submission.csv.gz" "$SUB_DIR/final/submission.e3.m1.csv.gz" "$SUB_DIR/final/submission_final.csv.gz"
  "$SUB_DIR/fused/submission_fused_final.csv.gz")
LABELS=(--label "D01 alone" --label "ensemble of 3" --label "+ flip TTA" --label "+ MD5 override ($MD5_DICT_TYPE)"
  --label "+ sum over pictures (m1)" --label "+ product-hash post-processing"
  --label "not the original's: learned fusion + MD5 override + product hashes")
RUNS=("$MODEL_DIR/D01/D01" "$MODEL_DIR/D02/D02" "$MODEL_DIR/D03/D03")
if [ "$BEYOND" = "B03" ]; then
  step "B03 (BEYOND=B03), not the original's: product mosaics; train/demo/D04_mosaic.sh, predicted alone and as a 4th model"
  MOSAIC_SIZE="$DEMO_MOSAIC_SIZE" data/create_dataset_A_mosaic.sh
  train/demo/D04_mosaic.sh
  MODELS="D04:$EPOCHS_4" MULTI_VIEW=1 MD5_DICT_TYPE=none ENSEMBLES=1 OUT_DIR="$SUB_DIR/mosaic_alone" \
    predict/run_predict.sh
  MODELS="D01:$EPOCHS_1 D02:$EPOCHS_2 D03:$FINETUNE_EPOCHS D04:$EPOCHS_4" MULTI_VIEW=1 MD5_DICT_TYPE="$MD5_DICT_TYPE" \
    ENSEMBLES="3 4" OUT_DIR="$SUB_DIR/mosaic" predict/run_predict.sh
  SCORED+=("$SUB_DIR/mosaic_alone/submission.csv.gz" "$SUB_DIR/mosaic/submission.e4.m1.csv.gz"
    "$SUB_DIR/mosaic/submission_final.csv.gz")
  LABELS+=(--label "not the original's: D04 (mosaics) alone, flip TTA"
    --label "  ensemble of 4 with D04 + MD5 override (m1)" --label "  + product-hash post-processing")
  RUNS+=("$MODEL_DIR/D04/D04")
fi

step "summary"
python -m data.dataset_summary --data-dir "$DEMO_DIR"
python -m train.summarise_runs --val-rec "$DEMO_DIR/dataset_A/valid.rec" "${RUNS[@]}"
echo
echo "test accuracy against the demo's ground truth, technique by technique:"
python -m predict.score_submission --truth "$DEMO_DIR/test_ground_truth.csv" "${LABELS[@]}" "${SCORED[@]}"
echo "plots: $DEMO_DIR/category_distribution.png, $MODEL_DIR/*/*-curve.png"
echo "submission: $SUB_DIR/final/submission_final.csv.gz"
