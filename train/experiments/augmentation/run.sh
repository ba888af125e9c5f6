#!/usr/bin/env bash
# Experiment of the write-up: no augmentation / flip / flip + HSL / flip at 224x224 (write-up: flip alone is
# enough). As its 4 recorded runs (train/experiments/augmentation/stderr_*): ResNet-34 fine-tuned from
# ImageNet-1k on DATASET_A with Adam at lr 5e-4, batch 512, 15 epochs; one run per variant, then compare
# MODEL_DIR/*/*-metrics.csv. The original ran the variants side by side on 2 GPUs each:
#   VARIANTS=flip GPUS=2,3 train/experiments/augmentation/run.sh     (DRY_RUN=1 prints the commands)
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/../../.."
source scripts/paths.sh
set -a  # every setting below goes to train/experiments/run_variants.sh and train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # the ImageNet-1k ResNet-34 checkpoint
MODEL_DIR="$(dir_from_env MODEL_DIR models)/experiments/augmentation"
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
SMOOTH_ALPHA=0.0              # label smoothing (the original's first training code had none)
DROPOUT_RATIO=0.0             # dropout before the classifier
IMAGE_SHAPE=3,180,180         # network input
RESIZE=0                      # 0: pictures used at their size
INTER_METHOD=1                # interpolation when resizing: 1 (bilinear), the iterator's default these runs got
RANDOM_CROP=1                 # as the logs record (the original's scripts say 0): no effect at the pictures' size
RANDOM_MIRROR=1               # random horizontal flip
MAX_RANDOM_H=0                # HSL colour augmentation: max change of hue,
MAX_RANDOM_S=0                #   saturation
MAX_RANDOM_L=0                #   and lightness
NUM_EPOCHS=15                 # every variant: from the ImageNet weights to checkpoint 15
INITIALIZER=xavier            # the new classifier's initialiser in the records (the original's older fine-tune.py)

# The variants: name, then the settings it changes.
VARIANT_1="noaug RANDOM_MIRROR=0"                                     # stderr_noaug: no flip
VARIANT_2="flip"                                                      # stderr_flip
VARIANT_3="flip_hsl MAX_RANDOM_H=20 MAX_RANDOM_S=20 MAX_RANDOM_L=20"  # stderr_flip_hsl
# stderr_flip_224: pictures enlarged to 224x224 with INTER_METHOD (the write-up's table says "224 x 224 (NN)")
VARIANT_4="flip_224 IMAGE_SHAPE=3,224,224 RESIZE=224"
set +a
exec train/experiments/run_variants.sh
