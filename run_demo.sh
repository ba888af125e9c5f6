#!/usr/bin/env bash
# The whole job end to end on a generated demo dataset (Kaggle's formats, made-up pictures):
# make the data, split it into DATASET_A and DATASET_C, build the MD5 dictionaries, plot the
# category distribution, train two small CNNs of different families and fine-tune one of them
# with a new classifier, and print what each step produced. Sets up .venv on first use.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
ensure_venv

DEMO_DIR="${DEMO_DIR:-demo_data}"      # generated data and everything made from it (re-created each run)
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

# The demo folder is the demo's own: refuse to overwrite a folder it did not make.
MARKER="$DEMO_DIR/.cdiscount_demo"
if [ -e "$DEMO_DIR" ] && [ ! -e "$MARKER" ] && [ -n "$(ls -A "$DEMO_DIR")" ]; then
  echo "error: $DEMO_DIR exists and was not made by run_demo.sh; set DEMO_DIR to another folder" >&2
  exit 2
fi
mkdir -p "$DEMO_DIR" && touch "$MARKER"
export DATA_DIR="$DEMO_DIR" FORCE=1

step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

step "1/8 generate demo data"
python -m data.make_demo_data --out-dir "$DEMO_DIR" --num-categories "$NUM_CATEGORIES" \
  --num-train-products "$NUM_TRAIN_PRODUCTS" --num-test-products "$NUM_TEST_PRODUCTS" --seed "$DEMO_SEED" --force

step "2/8 DATASET_A: split 95/5 with seed 0xC0FFEE, convert to .rec"
data/create_dataset_A.sh

step "3/8 DATASET_C: DATASET_A without repeated images"
data/create_dataset_C.sh

step "4/8 MD5 dictionaries"
data/create_train_md5_dict.sh

step "5/8 category distribution"
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

step "6/8 train $MODEL_1 on DATASET_A"
train model1 "$MODEL_1" "$EPOCHS_1"

step "7/8 train $MODEL_2 on DATASET_A"
train model2 "$MODEL_2" "$EPOCHS_2"

step "8/8 fine-tune: $MODEL_1 from model 1's checkpoint, new classifier"
train finetune "$MODEL_1" "$FINETUNE_EPOCHS" --params "$MODEL_DIR/model1/model1-$(printf %04d "$EPOCHS_1").params"

step "summary"
python -m data.dataset_summary --data-dir "$DEMO_DIR"
python -m train.summarise_runs --val-rec "$DEMO_DIR/dataset_A/valid.rec" \
  "$MODEL_DIR/model1/model1" "$MODEL_DIR/model2/model2" "$MODEL_DIR/finetune/finetune"
echo "plots: $DEMO_DIR/category_distribution.png, $MODEL_DIR/*/*-curve.png"
