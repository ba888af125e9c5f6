#!/usr/bin/env bash
# Experiment of the write-up: No augmentation / flip / flip + HSL / flip at 224 (write-up: flip alone is enough).
# ResNet-34 fine-tuned from ImageNet-1k on DATASET_A, one run per variant; compare MODEL_DIR/*/*-metrics.csv.
set -euo pipefail
cd "$(dirname "$0")/../../.."

DATA_DIR="${DATA_DIR:-data_dir}"                # dataset_A .rec files
PRETRAINED_DIR="${PRETRAINED_DIR:-pretrained}"  # imagenet1k-resnet-34 checkpoint
MODEL_DIR="${MODEL_DIR:-models}/experiments/augmentation"
GPUS="${GPUS-0,1}"                              # the experiments ran on 2 GPUs

SYMBOL="$PRETRAINED_DIR/resnet-34-symbol.json"    # ResNet-34, ImageNet-1k (MXNet model zoo)
PARAMS="$PRETRAINED_DIR/resnet-34-0000.params"
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnet/34-layers/"
FEATURE_LAYER=flatten0
DATASET=dataset_A
BATCH_SIZE=512
OPTIMIZER=adam                                    # as in the original experiment
LR=0.0005
LR_FACTOR=0.2
LR_STEP_EPOCHS=6,10,13
NUM_EPOCHS=15
SMOOTH_ALPHA=0.0
HSL_RANGE=20                                      # max random hue/saturation/lightness change of flip_hsl

export DATA_DIR PRETRAINED_DIR MODEL_DIR GPUS SYMBOL PARAMS PRETRAINED_SOURCE FEATURE_LAYER DATASET BATCH_SIZE \
  OPTIMIZER LR LR_FACTOR LR_STEP_EPOCHS NUM_EPOCHS SMOOTH_ALPHA ${MOM:+MOM}
MODEL_NAME=noaug RANDOM_MIRROR=0 train/run_model.sh
MODEL_NAME=flip RANDOM_MIRROR=1 train/run_model.sh
MODEL_NAME=flip_hsl RANDOM_MIRROR=1 MAX_RANDOM_H=$HSL_RANGE MAX_RANDOM_S=$HSL_RANGE MAX_RANDOM_L=$HSL_RANGE \
  train/run_model.sh
MODEL_NAME=flip_224 RANDOM_MIRROR=1 IMAGE_SHAPE=3,224,224 RESIZE=224 train/run_model.sh
