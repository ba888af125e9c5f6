#!/usr/bin/env bash
# Experiment of the write-up: Label smoothing alpha 0.0 / 0.1 / 0.2 (write-up: 0.1 is best, 0.6940 val).
# ResNet-34 fine-tuned from ImageNet-1k on DATASET_A, one run per variant; compare MODEL_DIR/*/*-metrics.csv.
set -euo pipefail
cd "$(dirname "$0")/../../.."

DATA_DIR="${DATA_DIR:-data_dir}"                # dataset_A .rec files
PRETRAINED_DIR="${PRETRAINED_DIR:-pretrained}"  # imagenet1k-resnet-34 checkpoint
MODEL_DIR="${MODEL_DIR:-models}/experiments/label_smoothing"
GPUS="${GPUS-0,1}"                              # the experiments ran on 2 GPUs

SYMBOL="$PRETRAINED_DIR/resnet-34-symbol.json"    # ResNet-34, ImageNet-1k (MXNet model zoo)
PARAMS="$PRETRAINED_DIR/resnet-34-0000.params"
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnet/34-layers/"
FEATURE_LAYER=flatten0
DATASET=dataset_A
BATCH_SIZE=512
OPTIMIZER=nadam
LR=0.0001
LR_FACTOR=0.2
LR_STEP_EPOCHS=10,13
NUM_EPOCHS=15
SMOOTH_ALPHAS="0.0 0.1 0.2"                       # the variants

export DATA_DIR PRETRAINED_DIR MODEL_DIR GPUS SYMBOL PARAMS PRETRAINED_SOURCE FEATURE_LAYER DATASET BATCH_SIZE \
  OPTIMIZER LR LR_FACTOR LR_STEP_EPOCHS NUM_EPOCHS SMOOTH_ALPHA ${MOM:+MOM}
for SMOOTH_ALPHA in $SMOOTH_ALPHAS; do
  MODEL_NAME="smooth_$SMOOTH_ALPHA" SMOOTH_ALPHA="$SMOOTH_ALPHA" train/run_model.sh
done
