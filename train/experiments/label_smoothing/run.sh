#!/usr/bin/env bash
# Experiment of the write-up: label smoothing alpha 0.0 / 0.1 / 0.2 (write-up: 0.1 is best, 0.6940 val).
# As its 3 recorded runs (train/experiments/label_smoothing/stderr_smooth*.txt): ResNet-34 fine-tuned from
# ImageNet-1k on DATASET_A with Adam at lr 5e-4, lr steps 6,10,13,15, batch 512, 15 epochs; one run per
# variant, then compare MODEL_DIR/*/*-metrics.csv.
#   VARIANTS=smooth_0.1 GPUS=2,3 train/experiments/label_smoothing/run.sh     (DRY_RUN=1 prints the commands)
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/../../.."
source scripts/paths.sh
set -a  # every setting below goes to train/experiments/run_variants.sh and train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # the ImageNet-1k ResNet-34 checkpoint
MODEL_DIR="$(dir_from_env MODEL_DIR models)/experiments/label_smoothing"
GPUS="${GPUS-0,1}"                                          # 2 GPUs per run, as recorded (empty: CPU)

SYMBOL="$PRETRAINED_DIR/resnet-34-symbol.json"    # the published ImageNet-1k ResNet-34
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/resnet-34-0000.params"    # starting weights
FEATURE_LAYER=flatten0                            # the new classifier goes after this layer
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnet/34-layers/"

# Settings of every variant that does not change them below.
DATASET=dataset_A
OPTIMIZER=adam
LR=0.0005
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=6,10,13,15
MOM=0.9                       # momentum of sgd/nag (Adam got only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam got none)
BATCH_SIZE=512                # over all GPUs
SMOOTH_ALPHA=0.1              # label smoothing (each variant sets its own)
DROPOUT_RATIO=0.0             # dropout before the classifier (the code of these runs had none)
IMAGE_SHAPE=3,180,180         # network input: the pictures' own size
RESIZE=0                      # 0: pictures used at their size
INTER_METHOD=1                # interpolation when resizing (1: the iterator's default these runs got)
RANDOM_CROP=1                 # as recorded: a 180x180 crop of a 180x180 picture is the picture
RANDOM_MIRROR=1               # random horizontal flip
MAX_RANDOM_H=0                # HSL colour augmentation: max change of hue,
MAX_RANDOM_S=0                #   saturation
MAX_RANDOM_L=0                #   and lightness
NUM_EPOCHS=15                 # every variant: from the ImageNet weights to checkpoint 15

# The variants: name, then the settings it changes.
VARIANT_1="smooth_0.0 SMOOTH_ALPHA=0.0"     # stderr_smooth0.0.txt
VARIANT_2="smooth_0.1 SMOOTH_ALPHA=0.1"     # stderr_smooth0.1.txt
VARIANT_3="smooth_0.2 SMOOTH_ALPHA=0.2"     # stderr_smooth0.2.txt
set +a
exec train/experiments/run_variants.sh
