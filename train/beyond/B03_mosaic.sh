#!/usr/bin/env bash
# B03, not the original's (docs/beyond.md#multi-image-mosaic-models): bestfitting's multi-image models (1st place),
# one network input per product. M07's recipe (ResNeXt-101-64x4d fine-tuned from ImageNet-1k; Adam at lr 1e-4,
# HSL 20/20/20, 15 epochs) on dataset_A_mosaic, DATASET_A's products with their 1-4 pictures tiled 2x2 into one
# 360x360 picture (data/create_dataset_A_mosaic.sh), at a quarter of M07's batch: a 360x360 mosaic holds 4 times
# a picture's pixels, so 128 of them take the memory of M07's 512 pictures.
#   DRY_RUN=1 train/beyond/B03_mosaic.sh prints the commands; LOAD_EPOCH=N resumes from checkpoint N (see
#   train/run_model.sh). Its checkpoints record the mosaic layout (PREFIX-input.json), from which predict.predict
#   builds each test product's mosaic; it joins an ensemble of picture models in predict/run_predict.sh's MODELS.
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/../.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A_mosaic .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/B03/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # M07's record: 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as M07's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=B03
SYMBOL="$PRETRAINED_DIR/resnext-101-64x4d-symbol.json"  # the published ImageNet-1k ResNeXt-101-64x4d
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/resnext-101-64x4d-0000.params"  # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten0                            # the new classifier goes after this layer
INITIALIZER=xavier                                # M07's initialiser of the new classifier
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnext/101-layers/"
BEYOND_THE_ORIGINAL=1                             # not one of the original's scripts

# Settings of every stage that does not change them below: M07's, on product mosaics.
DATASET=dataset_A_mosaic      # one record per product: its pictures tiled 2x2 (360x360, repeat fill)
OPTIMIZER=adam
LR=0.0001
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=6,10,13,15
MOM=0.9                       # momentum of sgd/nag (Adam gets only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam gets none)
BATCH_SIZE=128                # over all GPUs: M07's 512 pictures' memory in mosaics of 4 pictures' size
SMOOTH_ALPHA=0.0              # label smoothing
DROPOUT_RATIO=0.0             # dropout before the classifier
IMAGE_SHAPE=3,360,360         # network input: the whole mosaic (a smaller one would crop tiles: refused)
RESIZE=0                      # 0: mosaics used at their size
INTER_METHOD=1                # interpolation when resizing
RANDOM_CROP=1                 # a 360x360 crop of a 360x360 mosaic is the mosaic
RANDOM_MIRROR=1               # random flip of the whole mosaic (its tiles swap sides: an augmentation too)
MAX_RANDOM_H=20               # HSL colour augmentation: max change of hue,
MAX_RANDOM_S=20               #   saturation
MAX_RANDOM_L=20               #   and lightness

# One stage, M07's run: the checkpoint it starts from (0: PARAMS) and its last checkpoint.
STAGE_1="START_EPOCH=0 END_EPOCH=15"
DEFAULT_STAGES="1"            # the only stage
set +a
exec train/run_model.sh
