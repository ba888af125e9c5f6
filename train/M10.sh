#!/usr/bin/env bash
# M10: ResNeXt-101 (32x4d), fine-tuned from ImageNet-1k, DATASET_A, 19 epochs.
# Needs data/create_dataset_A.sh; the starting weights come from http://data.mxnet.io/models/imagenet/resnext/.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${DATA_DIR:-data_dir}"                # dataset_A/B/C .rec files
PRETRAINED_DIR="${PRETRAINED_DIR:-pretrained}"  # published ImageNet checkpoints
MODEL_DIR="${MODEL_DIR:-models}"                # checkpoints go to MODEL_DIR/M10/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                    # empty: CPU

MODEL_NAME=M10
SYMBOL="$PRETRAINED_DIR/resnext-101-symbol.json"     # network: train/symbols name or *-symbol.json
PARAMS="$PRETRAINED_DIR/resnext-101-0000.params"     # starting weights
FEATURE_LAYER="flatten0"                             # cut here for the new classifier (empty: the family's)
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnext/"
DATASET=dataset_A                            # dataset_A / dataset_B / dataset_C
NUM_EPOCHS=19                                 # epochs in the write-up's table
BATCH_SIZE=512                                # over all GPUs
OPTIMIZER=nadam                               # better than sgd, nag and adam on this data
LR=0.0001                                     # epochs 1-10
LR_FACTOR=0.2                                 # 2e-5 for epochs 11-13, 4e-6 after
LR_STEP_EPOCHS=10,13
MOM=0.9                                       # NADAM beta1
WD=0.00004                                    # weight decay
SMOOTH_ALPHA=0.1                              # label smoothing
DROPOUT_RATIO=0.0                             # no dropout after global pooling
IMAGE_SHAPE=3,180,180                         # the pictures' own size
RANDOM_CROP=0                                 # no random crop
RANDOM_MIRROR=1                               # random horizontal flip only
RGB_MEAN=0,0,0                                # raw 0-255 RGB, as the solution fed every network
RGB_SCALE=1.0
NUM_CLASSES=5270
KV_STORE=device                               # device or nccl on one machine
DTYPE=float32                                 # float16: mixed precision on GPUs
DATA_NTHREADS=6                               # JPEG decoding threads
SEED=0                                         # data order and initialisation

export DATA_DIR PRETRAINED_DIR MODEL_DIR GPUS MODEL_NAME SYMBOL PARAMS FEATURE_LAYER PRETRAINED_SOURCE DATASET \
  NUM_EPOCHS BATCH_SIZE OPTIMIZER LR LR_FACTOR LR_STEP_EPOCHS MOM WD SMOOTH_ALPHA DROPOUT_RATIO IMAGE_SHAPE \
  RANDOM_CROP RANDOM_MIRROR RGB_MEAN RGB_SCALE NUM_CLASSES KV_STORE DTYPE DATA_NTHREADS SEED
train/run_model.sh
