#!/usr/bin/env bash
# D03: the demo's fine-tune: D01's network and weights after its last epoch, cut at its feature layer
# (recorded in D01-input.json) with a new classifier, one more epoch: what train/M01.sh ... M14.sh do
# with the published ImageNet checkpoints. Run train/demo/D01.sh first.
#   DRY_RUN=1 train/demo/D03.sh prints the command (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR or MODEL_DIR is taken from here
cd "$(dirname "$0")/../.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR demo_data)"         # the demo's dataset_A .rec files
MODEL_DIR="$(dir_from_env MODEL_DIR demo_data/models)"  # checkpoints go to MODEL_DIR/D03/
GPUS="${GPUS-}"                                       # empty: the CPU
BN_GROUPS="${BN_GROUPS-}"                             # empty: one executor, BatchNorm over all 32 (below the record's 48-64 a GPU)

MODEL_NAME=D03
SYMBOL="$MODEL_DIR/D01/D01-symbol.json"   # the starting network: D01's
NETWORK_ARGS=""                           # more network flags of train.train_model
PARAMS="$MODEL_DIR/D01/D01-$(printf %04d "${EPOCHS_1:-3}").params"  # its weights after its last epoch
FEATURE_LAYER=""                          # empty: the layer D01-input.json records
PRETRAINED_SOURCE="train/demo/D01.sh"

FINETUNE_EPOCHS="${FINETUNE_EPOCHS:-1}"                  # epochs (run_demo.sh's FINETUNE_EPOCHS)
DATASET=dataset_A
OPTIMIZER=nadam
LR=0.001
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=$(( FINETUNE_EPOCHS > 1 ? FINETUNE_EPOCHS - 1 : 1 ))  # lr x0.2 for the last epoch
MOM=0.9                       # momentum of sgd/nag (NADAM gets only the lr)
WD=0.00004                    # weight decay of sgd/nag
BATCH_SIZE=32
SMOOTH_ALPHA=0.1              # label smoothing, as the solution
DROPOUT_RATIO=0.0
IMAGE_SHAPE=3,64,64           # as D01
RESIZE=64
INTER_METHOD=9
RANDOM_CROP=0
RANDOM_MIRROR=1
MAX_RANDOM_H=0
MAX_RANDOM_S=0
MAX_RANDOM_L=0

STAGE_1="START_EPOCH=0 END_EPOCH=$FINETUNE_EPOCHS"
DEFAULT_STAGES="1"
set +a
exec train/run_model.sh
