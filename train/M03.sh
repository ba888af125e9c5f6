#!/usr/bin/env bash
# M03: DPN-92 fine-tuned from cypw's 'dpn92-5k' weights (the records' name; the write-up says ImageNet-1k);
# the original submitted its checkpoint of epoch 13. One recorded run (train/M03/stderr): Adam at lr
# 5e-5, batch 256, 13 epochs.
# Data: refined_train.rec (7,310,313 images) and refined_val.rec, the original's: DATASET_A's split; training keeps
# pictures whose MD5 has a single category in the whole train.bson, each MD5 once; validation each MD5 once (the
# records of dataset_C's valid.rec). data/create_dataset_refined.sh builds them (after create_dataset_A.sh and
# create_train_md5_dict.sh).
#   DRY_RUN=1 train/M03.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M03/
GPUS="${GPUS-0,1,2,3}"                                      # 4 GPUs as recorded (it ran on 4-7, beside M02) (empty: CPU)
BN_GROUPS="${BN_GROUPS-4}"                                  # BatchNorm over batch/4 as on the record's 4 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M03
SYMBOL="$PRETRAINED_DIR/dpn92-5k-symbol.json"     # the published DPN-92 ('dpn92-5k')
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/dpn92-5k-0000.params"     # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten                             # the new classifier goes after this layer
INITIALIZER=xavier                                # the new classifier's initialiser in the record (fine-tune.py's)
PRETRAINED_SOURCE="https://github.com/cypw/DPNs"

# Settings of every stage that does not change them below.
DATASET=dataset_refined       # record: refined_train.rec, refined_val.rec (see above)
OPTIMIZER=adam
LR=0.00005
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=6,10,13
MOM=0.9                       # momentum of sgd/nag (Adam/NADAM got only the lr)
WD=0.00004                    # weight decay of sgd/nag (Adam/NADAM got none)
BATCH_SIZE=256                # over all GPUs
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
# the run: ran to its end, 13: the submitted checkpoint
STAGE_1="START_EPOCH=0 END_EPOCH=13"
DEFAULT_STAGES="1"            # the only stage
set +a
exec train/run_model.sh
