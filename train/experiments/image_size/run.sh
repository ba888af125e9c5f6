#!/usr/bin/env bash
# Experiment of the write-up: Input size 160 / 180 / 192 / 224 (write-up: larger is more accurate but slower; 180 chosen).
# ResNet-34 fine-tuned from ImageNet-1k on DATASET_A, one run per variant; compare MODEL_DIR/*/*-metrics.csv.
set -euo pipefail
cd "$(dirname "$0")/../../.."

DATA_DIR="${DATA_DIR:-data_dir}"                # dataset_A .rec files
PRETRAINED_DIR="${PRETRAINED_DIR:-pretrained}"  # imagenet1k-resnet-34 checkpoint
MODEL_DIR="${MODEL_DIR:-models}/experiments/image_size"
GPUS="${GPUS-0,1}"                              # the experiments ran on 2 GPUs

SYMBOL="$PRETRAINED_DIR/resnet-34-symbol.json"    # ResNet-34, ImageNet-1k (MXNet model zoo)
PARAMS="$PRETRAINED_DIR/resnet-34-0000.params"
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnet/34-layers/"
FEATURE_LAYER=flatten0
DATASET=dataset_A
BATCH_SIZE=512
OPTIMIZER=sgd                                     # as in the original experiment
LR=0.005
MOM=0.9
LR_FACTOR=0.2
LR_STEP_EPOCHS=8,12,15
NUM_EPOCHS=17
SMOOTH_ALPHA=0.0
IMAGE_SIZES="160 180 192 224"                     # the variants: pictures resized to this, then used whole

export DATA_DIR PRETRAINED_DIR MODEL_DIR GPUS SYMBOL PARAMS PRETRAINED_SOURCE FEATURE_LAYER DATASET BATCH_SIZE \
  OPTIMIZER LR LR_FACTOR LR_STEP_EPOCHS NUM_EPOCHS SMOOTH_ALPHA ${MOM:+MOM}
for SIZE in $IMAGE_SIZES; do
  MODEL_NAME="size_$SIZE" IMAGE_SHAPE="3,$SIZE,$SIZE" RESIZE="$SIZE" train/run_model.sh
done
