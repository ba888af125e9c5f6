#!/usr/bin/env bash
# M01: ResNeXt-101 (32x4d) fine-tuned from ImageNet-1k; the original submitted its checkpoint of epoch 23.
# Its 6 recorded runs (train/M01/stderr, one file): NAG at lr 0.02, batch 512, HSL colour augmentation
# 20/40/50 from epoch 15. Run 6 continued past the submitted epoch (STAGES=all runs it).
# Data: refined_train.rec (7,310,313 images) and refined_val.rec, the original's: DATASET_A's split; training keeps
# pictures whose MD5 has a single category in the whole train.bson, each MD5 once; validation each MD5 once (the
# records of dataset_C's valid.rec). data/create_dataset_refined.sh builds them (after create_dataset_A.sh and
# create_train_md5_dict.sh).
#   DRY_RUN=1 train/M01.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M01/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # the record's 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as on the record's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M01
SYMBOL="$PRETRAINED_DIR/resnext-101-symbol.json"  # the published ImageNet-1k ResNeXt-101 (32x4d)
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/resnext-101-0000.params"  # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten0                            # the new classifier goes after this layer
INITIALIZER=xavier                                # the new classifier's initialiser in the record (fine-tune.py's)
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnext/101-layers/"

# Settings of every stage that does not change them below.
DATASET=dataset_refined       # record: refined_train.rec, refined_val.rec (see above)
OPTIMIZER=nag
LR=0.02
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=8,16,20
MOM=0.9                       # momentum of sgd/nag (Adam/NADAM got only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam/NADAM got none)
BATCH_SIZE=512                # over all GPUs
SMOOTH_ALPHA=0.0              # label smoothing (the original's first training code had none)
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
# run 1: NAG lr 0.02 from the ImageNet weights; stopped after epoch 11
STAGE_1="START_EPOCH=0 END_EPOCH=11"
# run 2: lr steps 8,11,13,20; stopped after epoch 15
STAGE_2="START_EPOCH=11 END_EPOCH=15 LR_STEP_EPOCHS=8,11,13,20"
# run 3: lr steps 8,20 (lr back up to 0.004) and HSL 20/40/50; stopped after epoch 17
STAGE_3="START_EPOCH=15 END_EPOCH=17 LR_STEP_EPOCHS=8,20
         MAX_RANDOM_H=20 MAX_RANDOM_S=40 MAX_RANDOM_L=50"
# run 4: lr steps 8,17,20; stopped after epoch 18
STAGE_4="START_EPOCH=17 END_EPOCH=18 LR_STEP_EPOCHS=8,17,20
         MAX_RANDOM_H=20 MAX_RANDOM_S=40 MAX_RANDOM_L=50"
# run 5: lr steps 8,17,20,23; ran to its end, 23: the submitted checkpoint
STAGE_5="START_EPOCH=18 END_EPOCH=23 LR_STEP_EPOCHS=8,17,20,23
         MAX_RANDOM_H=20 MAX_RANDOM_S=40 MAX_RANDOM_L=50"
# run 6: past the submitted epoch (not in the default run)
STAGE_6="START_EPOCH=23 END_EPOCH=25 LR_STEP_EPOCHS=8,17,20,23,25
         MAX_RANDOM_H=20 MAX_RANDOM_S=40 MAX_RANDOM_L=50"
DEFAULT_STAGES="1 2 3 4 5"    # the stages the submitted checkpoint 23 descends from
set +a
exec train/run_model.sh
