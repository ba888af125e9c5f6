#!/usr/bin/env bash
# Experiment of the write-up: input size 160 / 180 / 192 / 224 (write-up: larger is more accurate but slower;
# 180 chosen). As its 4 recorded runs (train/experiments/image_size/stderr_*): ResNet-34 fine-tuned from
# ImageNet-1k on DATASET_A with SGD at lr 0.005, lr steps 8,12,15,17, batch 512, 17 epochs, the pictures
# resized with bilinear interpolation (--inter-method 1); one run per variant, then compare
# MODEL_DIR/*/*-metrics.csv.
#   VARIANTS=size_224 GPUS=6,7 train/experiments/image_size/run.sh     (DRY_RUN=1 prints the commands)
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/../../.."
source scripts/paths.sh
set -a  # every setting below goes to train/experiments/run_variants.sh and train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # the ImageNet-1k ResNet-34 checkpoint
MODEL_DIR="$(dir_from_env MODEL_DIR models)/experiments/image_size"
GPUS="${GPUS-0,1}"                                          # 2 GPUs per run, as recorded (empty: CPU)

SYMBOL="$PRETRAINED_DIR/resnet-34-symbol.json"    # the published ImageNet-1k ResNet-34
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/resnet-34-0000.params"    # starting weights
FEATURE_LAYER=flatten0                            # the new classifier goes after this layer
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnet/34-layers/"

# Settings of every variant that does not change them below.
DATASET=dataset_A
OPTIMIZER=sgd
LR=0.005
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=8,12,15,17
MOM=0.9                       # SGD momentum
WD=0.00004                    # SGD weight decay
BATCH_SIZE=512                # over all GPUs
SMOOTH_ALPHA=0.0              # label smoothing
DROPOUT_RATIO=0.0             # dropout before the classifier
IMAGE_SHAPE=3,180,180         # network input (each variant sets its own)
RESIZE=180                    # shorter edge resized to this first (each variant sets its own)
INTER_METHOD=1                # bilinear, as recorded (the original's default was 9)
RANDOM_CROP=1                 # as recorded: a crop of the resized picture's own size is the picture
RANDOM_MIRROR=1               # random horizontal flip
MAX_RANDOM_H=0                # HSL colour augmentation: max change of hue,
MAX_RANDOM_S=0                #   saturation
MAX_RANDOM_L=0                #   and lightness
NUM_EPOCHS=17                 # every variant: from the ImageNet weights to checkpoint 17

# The variants: name, then the settings it changes.
VARIANT_1="size_160 IMAGE_SHAPE=3,160,160 RESIZE=160"     # stderr_160
VARIANT_2="size_180 IMAGE_SHAPE=3,180,180 RESIZE=180"     # stderr_180
VARIANT_3="size_192 IMAGE_SHAPE=3,192,192 RESIZE=192"     # stderr_192
VARIANT_4="size_224 IMAGE_SHAPE=3,224,224 RESIZE=224"     # stderr_224
set +a
exec train/experiments/run_variants.sh
