#!/usr/bin/env bash
# B02, not the original's (docs/beyond.md#hierarchical-heads): M07's recipe (ResNeXt-101-64x4d fine-tuned from
# ImageNet-1k on DATASET_A; Adam at lr 1e-4, batch 512, HSL 20/20/20, 15 epochs) with rwightman's hierarchical
# heads: beside the 5270-class head, heads of the categories' 483 level-2 and 49 level-1 groups on the same
# features, the losses weighted by HEAD_WEIGHTS (--level-heads --head-weights). It trains on
# dataset_A_levels, DATASET_A's records with a label vector each (data/create_dataset_A_levels.sh).
#   DRY_RUN=1 train/beyond/B02_hierarchical_heads.sh prints the commands; LOAD_EPOCH=N resumes from
#   checkpoint N (see train/run_model.sh). Predict with its class head, or --combine-levels (predict.predict).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/../.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A_levels .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/B02/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # M07's record: 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as M07's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=B02
SYMBOL="$PRETRAINED_DIR/resnext-101-64x4d-symbol.json"  # the published ImageNet-1k ResNeXt-101-64x4d
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/resnext-101-64x4d-0000.params"  # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten0                            # the new classifiers go after this layer
INITIALIZER=xavier                                # M07's initialiser of the new classifiers
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnext/101-layers/"
BEYOND_THE_ORIGINAL=1                             # not one of the original's scripts: takes the settings below
HEAD_WEIGHTS=0.8,0.1,0.1                          # loss weights of the class, level-2 and level-1 heads (rwightman's)

# Settings of every stage that does not change them below: M07's, on DATASET_A's records with level labels.
DATASET=dataset_A_levels
OPTIMIZER=adam
LR=0.0001
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=6,10,13,15
MOM=0.9                       # momentum of sgd/nag (Adam gets only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam gets none)
BATCH_SIZE=512                # over all GPUs
SMOOTH_ALPHA=0.0              # label smoothing (of every head)
DROPOUT_RATIO=0.0             # dropout before the classifiers
IMAGE_SHAPE=3,180,180         # network input: the pictures' own size
RESIZE=0                      # 0: pictures used at their size
INTER_METHOD=1                # interpolation when resizing
RANDOM_CROP=1                 # a 180x180 crop of a 180x180 picture is the picture
RANDOM_MIRROR=1               # random horizontal flip
MAX_RANDOM_H=20               # HSL colour augmentation: max change of hue,
MAX_RANDOM_S=20               #   saturation
MAX_RANDOM_L=20               #   and lightness

# One stage, M07's run: the checkpoint it starts from (0: PARAMS) and its last checkpoint.
STAGE_1="START_EPOCH=0 END_EPOCH=15"
DEFAULT_STAGES="1"            # the only stage
set +a
exec train/run_model.sh
