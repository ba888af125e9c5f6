#!/usr/bin/env bash
# The whole job end to end on a generated demo dataset (Kaggle's formats, made-up pictures):
# make the data, split it into DATASET_A and DATASET_C, build the MD5 dictionaries, plot the
# category distribution, train two small CNNs of different families and fine-tune one of them
# with a new classifier, predict the test set with the ensemble (flip TTA, MD5 overrides,
# product-hash post-processing), score each technique against the demo's ground truth, and
# end with a valid submission file. Sets up .venv on first use.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DEMO_DIR or VENV_DIR is taken from where the script was run
cd "$(dirname "$0")"
source scripts/paths.sh
source scripts/ensure_venv.sh
ensure_venv

DEMO_DIR="$(dir_from_env DEMO_DIR demo_data)"  # generated data and everything made from it (re-created each run)
NUM_CATEGORIES="${NUM_CATEGORIES:-40}"              # demo categories (Kaggle: 5270)
NUM_TRAIN_PRODUCTS="${NUM_TRAIN_PRODUCTS:-4000}"    # demo train.bson products (Kaggle: 7,069,896)
NUM_TEST_PRODUCTS="${NUM_TEST_PRODUCTS:-800}"       # demo test.bson products (Kaggle: 1,768,182)
DEMO_SEED=0                                         # seed of the generator
# Training, scaled down for 2 CPU cores (the solution: 180x180, batch 512 on 8 GPUs, 11-23 epochs).
MODEL_1=densenet-41                    # demo-sized DenseNet
MODEL_2=dpn-26                         # demo-sized DPN: another family
IMAGE_SIZE=64                          # pictures resized from 180 to this
EPOCHS_1="${EPOCHS_1:-3}"              # epochs of model 1
EPOCHS_2="${EPOCHS_2:-2}"              # epochs of model 2
FINETUNE_EPOCHS="${FINETUNE_EPOCHS:-1}"  # epochs of the fine-tune from model 1's checkpoint
BATCH_SIZE=32
LR=0.001                               # NADAM; higher than the solution's 1e-4 since these start from scratch
SMOOTH_ALPHA=0.1                       # label smoothing, as the solution
MODEL_DIR="$DEMO_DIR/models"
# Prediction, as the solution's final run but with the demo models.
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
mkdir -p "$DEMO_DIR" && touch "$MARKER"
export DATA_DIR="$DEMO_DIR" FORCE=1

step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

step "1/10 generate demo data"
python -m data.make_demo_data --out-dir "$DEMO_DIR" --num-categories "$NUM_CATEGORIES" \
  --num-train-products "$NUM_TRAIN_PRODUCTS" --num-test-products "$NUM_TEST_PRODUCTS" --seed "$DEMO_SEED" --force

step "2/10 DATASET_A: split 95/5 with seed 0xC0FFEE, convert to .rec"
data/create_dataset_A.sh

step "3/10 DATASET_C: DATASET_A without repeated images"
data/create_dataset_C.sh

step "4/10 MD5 dictionaries"
data/create_train_md5_dict.sh

step "5/10 category distribution"
python -m data.plot_category_distribution --bson "$DEMO_DIR/train.bson" \
  --out "$DEMO_DIR/category_distribution.png" --force

NUM_CLASSES="$(($(wc -l < "$DEMO_DIR/category_names.csv") - 1))"
train() {  # train NAME SYMBOL EPOCHS [extra train_model arguments]
  local name="$1" symbol="$2" epochs="$3"
  shift 3
  python -m train.train_model --symbol "$symbol" --num-classes "$NUM_CLASSES" \
    --data-train "$DEMO_DIR/dataset_A/train.rec" --data-val "$DEMO_DIR/dataset_A/valid.rec" \
    --image-shape "3,$IMAGE_SIZE,$IMAGE_SIZE" --resize "$IMAGE_SIZE" --batch-size "$BATCH_SIZE" \
    --num-epochs "$epochs" --optimizer nadam --lr "$LR" --lr-step-epochs "$(( epochs > 1 ? epochs - 1 : epochs ))" \
    --smooth-alpha "$SMOOTH_ALPHA" \
    --data-nthreads 2 --disp-batches 50 --model-prefix "$MODEL_DIR/$name/$name" "$@"
}

step "6/10 train $MODEL_1 on DATASET_A"
train model1 "$MODEL_1" "$EPOCHS_1"

step "7/10 train $MODEL_2 on DATASET_A"
train model2 "$MODEL_2" "$EPOCHS_2"

step "8/10 fine-tune: $MODEL_1 from model 1's checkpoint, new classifier"
train finetune "$MODEL_1" "$FINETUNE_EPOCHS" --params "$MODEL_DIR/model1/model1-$(printf %04d "$EPOCHS_1").params" \
  --ignore-arg-names fc_weight,fc_bias   # keep the features, start a new classifier

step "9/10 predict test.bson: one model vs the ensemble, without and with flip TTA and the MD5 override"
mkdir -p "$SUB_DIR"
DEMO_MODELS=(model1 model2 finetune)   # ensemble order: --ensembles 1 is model 1 alone
DEMO_EPOCHS=("$EPOCHS_1" "$EPOCHS_2" "$FINETUNE_EPOCHS")
SYMBOLS=()
PARAMS=()
for i in 0 1 2; do
  SYMBOLS+=("$MODEL_DIR/${DEMO_MODELS[$i]}/${DEMO_MODELS[$i]}-symbol.json")
  PARAMS+=("$MODEL_DIR/${DEMO_MODELS[$i]}/${DEMO_MODELS[$i]}-$(printf %04d "${DEMO_EPOCHS[$i]}").params")
done
predict() {  # predict OUTPUT [extra predict.predict arguments]
  local output="$1"
  shift
  python -m predict.predict --bson "$DEMO_DIR/test.bson" --category-csv "$DEMO_DIR/category_names.csv" \
    --symbol "${SYMBOLS[@]}" --params "${PARAMS[@]}" --image-shape "3,$IMAGE_SIZE,$IMAGE_SIZE" \
    --resize "$IMAGE_SIZE" --batch-size "$PREDICT_BATCH_SIZE" --num-procs "$NUM_PROCS" \
    --output "$SUB_DIR/$output" --force "$@"
}
predict plain.csv --multi-view 0 --md5-dict-type none --ensembles 1
predict flip.csv --multi-view 1 --md5-dict-type none
# --ensembles 3: also flip_md5.e3.m1.csv, the sum over a product's pictures, which the solution submitted
predict flip_md5.csv --multi-view 1 --md5-dict "$DEMO_DIR/md5_dict_train.npz" --md5-dict-type "$MD5_DICT_TYPE" \
  --ensembles 3

step "10/10 product-hash post-processing, check and score the submission"
python -m predict.md5_predict --md5-dict "$DEMO_DIR/md5_dict_train.npz" --bson "$DEMO_DIR/test.bson" \
  --output "$SUB_DIR/md5_product_overrides.csv" --force
python -m predict.postprocess_product --src "$SUB_DIR/flip_md5.e3.m1.csv" --md5 "$SUB_DIR/md5_product_overrides.csv" \
  --output "$SUB_DIR/submission.csv" --force
python -m predict.check_submission --bson "$DEMO_DIR/test.bson" --category-csv "$DEMO_DIR/category_names.csv" \
  "$SUB_DIR/submission.csv"

step "summary"
python -m data.dataset_summary --data-dir "$DEMO_DIR"
python -m train.summarise_runs --val-rec "$DEMO_DIR/dataset_A/valid.rec" \
  "$MODEL_DIR/model1/model1" "$MODEL_DIR/model2/model2" "$MODEL_DIR/finetune/finetune"
echo
echo "test accuracy against the demo's ground truth, technique by technique:"
python -m predict.score_submission --truth "$DEMO_DIR/test_ground_truth.csv" \
  --label "model 1 alone" --label "ensemble of 3" --label "+ flip TTA" --label "+ MD5 override ($MD5_DICT_TYPE)" \
  --label "+ sum over pictures (m1)" --label "+ product-hash post-processing" \
  "$SUB_DIR/plain.e1.m0.csv" "$SUB_DIR/plain.csv" "$SUB_DIR/flip.csv" "$SUB_DIR/flip_md5.csv" \
  "$SUB_DIR/flip_md5.e3.m1.csv" "$SUB_DIR/submission.csv"
echo "plots: $DEMO_DIR/category_distribution.png, $MODEL_DIR/*/*-curve.png"
echo "submission: $SUB_DIR/submission.csv"
