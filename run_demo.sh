#!/usr/bin/env bash
# The whole job end to end on a generated demo dataset (Kaggle's formats, made-up pictures):
# make the data, split it into DATASET_A and DATASET_C, build the MD5 dictionaries, plot the
# category distribution and print what each step produced. Sets up .venv on first use.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
ensure_venv

DEMO_DIR="${DEMO_DIR:-demo_data}"      # generated data and everything made from it (re-created each run)
NUM_CATEGORIES=40                      # demo categories (Kaggle: 5270)
NUM_TRAIN_PRODUCTS=4000                # demo train.bson products (Kaggle: 7,069,896)
NUM_TEST_PRODUCTS=800                  # demo test.bson products (Kaggle: 1,768,182)
DEMO_SEED=0                            # seed of the generator

# The demo folder is the demo's own: refuse to overwrite a folder it did not make.
MARKER="$DEMO_DIR/.cdiscount_demo"
if [ -e "$DEMO_DIR" ] && [ ! -e "$MARKER" ] && [ -n "$(ls -A "$DEMO_DIR")" ]; then
  echo "error: $DEMO_DIR exists and was not made by run_demo.sh; set DEMO_DIR to another folder" >&2
  exit 2
fi
mkdir -p "$DEMO_DIR" && touch "$MARKER"
export DATA_DIR="$DEMO_DIR" FORCE=1

step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

step "1/5 generate demo data"
python -m data.make_demo_data --out-dir "$DEMO_DIR" --num-categories "$NUM_CATEGORIES" \
  --num-train-products "$NUM_TRAIN_PRODUCTS" --num-test-products "$NUM_TEST_PRODUCTS" --seed "$DEMO_SEED" --force

step "2/5 DATASET_A: split 95/5 with seed 0xC0FFEE, convert to .rec"
data/create_dataset_A.sh

step "3/5 DATASET_C: DATASET_A without repeated images"
data/create_dataset_C.sh

step "4/5 MD5 dictionaries"
data/create_train_md5_dict.sh

step "5/5 category distribution"
python -m data.plot_category_distribution --bson "$DEMO_DIR/train.bson" \
  --out "$DEMO_DIR/category_distribution.png" --force

step "summary"
python -m data.dataset_summary --data-dir "$DEMO_DIR"
echo "plot: $DEMO_DIR/category_distribution.png"
