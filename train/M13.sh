#!/usr/bin/env bash
# M13: SE-ResNeXt-101-64x4d on DATASET_B, started from M09's checkpoint of epoch 15; the original submitted
# its checkpoint of epoch 13. Its 2 recorded runs (train/M13/stderr): NADAM at lr 1e-4, batch 512, label
# smoothing 0.1, dropout 0.2; HSL 20/20/20 to epoch 11, then no augmentation.
#   DRY_RUN=1 train/M13.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M13/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # the record's 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as on the record's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M13
SYMBOL=resnext                                    # built by train.train_model with NETWORK_ARGS, as the records did
NETWORK_ARGS="--num-layers 101 --num-conv-groups 64 --use-squeeze-excitation"  # SE-ResNeXt-101, 64 groups
PARAMS="$MODEL_DIR/M09/M09-0015.params"           # starting weights: M09's checkpoint of epoch 15
FEATURE_LAYER=""                                  # empty: the network's own
PRETRAINED_SOURCE="run train/M09.sh first"

# Settings of every stage that does not change them below.
DATASET=dataset_B
OPTIMIZER=nadam
LR=0.0001
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=4,7,9,11
MOM=0.9                       # momentum of sgd/nag (Adam/NADAM got only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam/NADAM got none)
BATCH_SIZE=512                # over all GPUs
SMOOTH_ALPHA=0.1              # label smoothing
DROPOUT_RATIO=0.2             # dropout before the classifier
IMAGE_SHAPE=3,180,180         # network input: the pictures' own size
RESIZE=0                      # 0: pictures used at their size
INTER_METHOD=1                # interpolation when resizing (1: the iterator's default these runs got)
RANDOM_CROP=1                 # as recorded; a 180x180 crop of a 180x180 picture is the picture
RANDOM_MIRROR=1               # random horizontal flip
MAX_RANDOM_H=0                # HSL colour augmentation: max change of hue,
MAX_RANDOM_S=0                #   saturation
MAX_RANDOM_L=0                #   and lightness

# The recorded runs in order: the checkpoint each resumes from (START_EPOCH; 0: PARAMS), its last
# checkpoint (END_EPOCH: one past its last validated epoch, or where the next run resumed), what it changes.
# run 1: NADAM lr 1e-4 from M09's weights, HSL 20/20/20; ran to its end, 11
STAGE_1="START_EPOCH=0 END_EPOCH=11 MAX_RANDOM_H=20 MAX_RANDOM_S=20 MAX_RANDOM_L=20"
# run 2: no augmentation, lr steps 4,7,9,13; ran to its end, 13: the submitted checkpoint
STAGE_2="START_EPOCH=11 END_EPOCH=13 LR_STEP_EPOCHS=4,7,9,13 RANDOM_CROP=0 RANDOM_MIRROR=0"
DEFAULT_STAGES="1 2"          # the stages the submitted checkpoint 13 descends from
set +a
exec train/run_model.sh
