#!/usr/bin/env bash
# M14: DPN-107 fine-tuned from cypw's 'dpn107-extra' ImageNet weights on DATASET_A; the original submitted
# its checkpoint of epoch 20. Its 3 recorded runs (train/M14/stderr): NADAM at lr 1e-4, batch 384, label
# smoothing 0.1; run 2 ran to 20 and run 3 went back to checkpoint 17 with another lr step.
#   DRY_RUN=1 train/M14.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M14/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # the record's 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as on the record's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M14
SYMBOL="$PRETRAINED_DIR/dpn107-extra-symbol.json"  # the published DPN-107 ('dpn107-extra')
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/dpn107-extra-0000.params"  # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten                             # the new classifier goes after this layer
PRETRAINED_SOURCE="https://github.com/cypw/DPNs"

# Settings of every stage that does not change them below.
DATASET=dataset_A
OPTIMIZER=nadam
LR=0.0001
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=10,13,15
MOM=0.9                       # momentum of sgd/nag (Adam/NADAM got only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam/NADAM got none)
BATCH_SIZE=384                # over all GPUs
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
# run 1: NADAM lr 1e-4 from the ImageNet weights; ran to its end, 15
STAGE_1="START_EPOCH=0 END_EPOCH=15"
# run 2: lr steps 10,13,20; ran to its end, 20, but run 3 restarts from 17
STAGE_2="START_EPOCH=15 END_EPOCH=20 LR_STEP_EPOCHS=10,13,20 INTER_METHOD=9"
# run 3: from checkpoint 17, lr steps 10,13,17,20; ran to its end, 20: the submitted checkpoint
STAGE_3="START_EPOCH=17 END_EPOCH=20 LR_STEP_EPOCHS=10,13,17,20 INTER_METHOD=9"
DEFAULT_STAGES="1 2 3"        # the stages the submitted checkpoint 20 descends from
set +a
exec train/run_model.sh
