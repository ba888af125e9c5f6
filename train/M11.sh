#!/usr/bin/env bash
# M11: SE-ResNeXt-101-64x4d on DATASET_A, started from M07's checkpoint of epoch 15 (as its record says; the
# write-up's table says M10); the original submitted its checkpoint of epoch 15. Its 5 recorded runs
# (train/M11/stderr): Adam at lr 5e-5 to epoch 4, then NADAM at lr 1e-4 with label smoothing 0.1, and
# dropout 0.2 and HSL 20/20/20 from epoch 10. Runs 4 (SGD) and 5 (NADAM) continued from the submitted
# epoch 15 without augmentation (STAGES=all runs them).
#   DRY_RUN=1 train/M11.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M11/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # the record's 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as on the record's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M11
SYMBOL=resnext                                    # built by train.train_model with NETWORK_ARGS, as the records did
NETWORK_ARGS="--num-layers 101 --num-conv-groups 64 --use-squeeze-excitation"  # SE-ResNeXt-101, 64 groups
PARAMS="$MODEL_DIR/M07/M07-0015.params"           # starting weights: M07's checkpoint of epoch 15
FEATURE_LAYER=""                                  # empty: the network's own
PRETRAINED_SOURCE="run train/M07.sh first"

# Settings of every stage that does not change them below.
DATASET=dataset_A
OPTIMIZER=nadam
LR=0.0001
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=4,6,8,15
MOM=0.9                       # momentum of sgd/nag (Adam/NADAM got only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam/NADAM got none)
BATCH_SIZE=512                # over all GPUs
SMOOTH_ALPHA=0.1              # label smoothing
DROPOUT_RATIO=0.0             # dropout before the classifier
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
# run 1: Adam lr 5e-5 from M07's weights, no label smoothing; stopped after epoch 4
STAGE_1="START_EPOCH=0 END_EPOCH=4 OPTIMIZER=adam LR=0.00005 LR_STEP_EPOCHS=8,12,15 SMOOTH_ALPHA=0.0"
# run 2: NADAM lr 1e-4, label smoothing 0.1; stopped after epoch 10
STAGE_2="START_EPOCH=4 END_EPOCH=10"
# run 3: dropout 0.2 and HSL 20/20/20; ran to its end, 15: the submitted checkpoint
STAGE_3="START_EPOCH=10 END_EPOCH=15 LR_STEP_EPOCHS=4,6,13,15 DROPOUT_RATIO=0.2
         MAX_RANDOM_H=20 MAX_RANDOM_S=20 MAX_RANDOM_L=20"
# run 4: SGD without augmentation past the submitted epoch (not in the default run)
STAGE_4="START_EPOCH=15 END_EPOCH=17 OPTIMIZER=sgd LR=0.001 LR_STEP_EPOCHS=10,15,20 SMOOTH_ALPHA=0.0
         DROPOUT_RATIO=0.2 RANDOM_CROP=0 RANDOM_MIRROR=0"
# run 5: NADAM without augmentation past the submitted epoch, to 20 (not in the default run)
STAGE_5="START_EPOCH=15 END_EPOCH=20 LR_STEP_EPOCHS=10,15,18,20 SMOOTH_ALPHA=0.0 RANDOM_CROP=0
         RANDOM_MIRROR=0 INTER_METHOD=9"
DEFAULT_STAGES="1 2 3"        # the stages the submitted checkpoint 15 descends from
set +a
exec train/run_model.sh
