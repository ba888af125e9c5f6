#!/usr/bin/env bash
# D02: the demo's second model, a demo-sized DPN (another family) trained from scratch on the demo's DATASET_A,
# in the format of train/M01.sh ... M14.sh (run_demo.sh runs it; scaled down for 2 CPU cores).
#   DRY_RUN=1 train/demo/D02.sh prints the command (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR or MODEL_DIR is taken from here
cd "$(dirname "$0")/../.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR demo_data)"         # the demo's dataset_A .rec files
MODEL_DIR="$(dir_from_env MODEL_DIR demo_data/models)"  # checkpoints go to MODEL_DIR/D02/
GPUS="${GPUS-}"                                       # empty: the CPU
BN_GROUPS="${BN_GROUPS-}"                             # empty: one executor, BatchNorm over all 32 (below the record's 48-64 a GPU)

MODEL_NAME=D02
SYMBOL=dpn-26                 # a network of train/symbols, built untrained
NETWORK_ARGS=""               # more network flags of train.train_model
PARAMS=""                     # from scratch
FEATURE_LAYER=""              # the network's own classifier
PRETRAINED_SOURCE=""

EPOCHS_2="${EPOCHS_2:-2}"                         # epochs (run_demo.sh's EPOCHS_2)
DATASET=dataset_A
OPTIMIZER=nadam
LR=0.001                      # higher than the solution's 1e-4: these start from scratch
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=$(( EPOCHS_2 > 1 ? EPOCHS_2 - 1 : 1 ))  # lr x0.2 for the last epoch
MOM=0.9                       # momentum of sgd/nag (NADAM gets only the lr)
WD=0.00004                    # weight decay of sgd/nag
BATCH_SIZE=32
SMOOTH_ALPHA=0.1              # label smoothing, as the solution
DROPOUT_RATIO=0.0
IMAGE_SHAPE=3,64,64           # pictures resized from 180 to 64 for the CPU
RESIZE=64
INTER_METHOD=9                # train.train_model's default
RANDOM_CROP=0
RANDOM_MIRROR=1               # flip-only augmentation, as the solution
MAX_RANDOM_H=0
MAX_RANDOM_S=0
MAX_RANDOM_L=0

STAGE_1="START_EPOCH=0 END_EPOCH=$EPOCHS_2"
DEFAULT_STAGES="1"
set +a
exec train/run_model.sh
