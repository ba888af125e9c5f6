#!/usr/bin/env bash
# D04, not the original's (docs/beyond.md#multi-image-mosaic-models): the demo-sized train/beyond/B03_mosaic.sh, a
# network of product mosaics (bestfitting's multi-image models): D01's DenseNet trained from scratch on the demo's
# DATASET_A as 128x128 mosaics, each product's 1-4 pictures tiled 2x2 at D01's 64x64
# (MOSAIC_SIZE=128 data/create_dataset_A_mosaic.sh). BEYOND=B03 ./run_demo.sh runs it.
#   DRY_RUN=1 train/demo/D04_mosaic.sh prints the command (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR or MODEL_DIR is taken from here
cd "$(dirname "$0")/../.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR demo_data)"         # the demo's dataset_A_mosaic .rec files
MODEL_DIR="$(dir_from_env MODEL_DIR demo_data/models)"  # checkpoints go to MODEL_DIR/D04/
GPUS="${GPUS-}"                                       # empty: the CPU
BN_GROUPS="${BN_GROUPS-}"                             # empty: one executor, BatchNorm over all 32

MODEL_NAME=D04
SYMBOL=densenet-41            # a network of train/symbols, built untrained
NETWORK_ARGS=""               # more network flags of train.train_model
PARAMS=""                     # from scratch
FEATURE_LAYER=""              # the network's own classifier
PRETRAINED_SOURCE=""
BEYOND_THE_ORIGINAL=1         # not one of the original's scripts

EPOCHS_4="${EPOCHS_4:-2}"                         # epochs (run_demo.sh's EPOCHS_4)
DATASET=dataset_A_mosaic      # one record per product: its pictures tiled 2x2 (128x128, repeat fill)
OPTIMIZER=nadam
LR=0.001                      # D01's: from scratch
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=$(( EPOCHS_4 > 1 ? EPOCHS_4 - 1 : 1 ))  # lr x0.2 for the last epoch
MOM=0.9                       # momentum of sgd/nag (NADAM gets only the lr)
WD=0.00004                    # weight decay of sgd/nag
BATCH_SIZE=32
SMOOTH_ALPHA=0.1              # label smoothing, as the solution
DROPOUT_RATIO=0.0
IMAGE_SHAPE=3,128,128         # the whole mosaic: tiles of D01's 64x64
RESIZE=0                      # mosaics used at their size
INTER_METHOD=9                # train.train_model's default
RANDOM_CROP=0
RANDOM_MIRROR=1               # the whole mosaic flipped (its tiles swap sides); prediction flips each tile
MAX_RANDOM_H=0
MAX_RANDOM_S=0
MAX_RANDOM_L=0

STAGE_1="START_EPOCH=0 END_EPOCH=$EPOCHS_4"
DEFAULT_STAGES="1"
set +a
exec train/run_model.sh
