#!/usr/bin/env bash
# M06: DPN-92 fine-tuned from cypw's 'dpn92-5k' weights (the records' name; the write-up says ImageNet-1k);
# the original submitted its checkpoint of epoch 11. Its 2 recorded runs (train/M06/stderr, stderr2): Adam at
# lr 1e-4, batch 512.
# Data: cdiscount_c5270 (11,752,908 training, 618,385 validation images), the original's first 95/5 split, by
# picture (a product's pictures can land on both sides), rebuilt draw for draw by data/create_dataset_c5270.sh.
#   DRY_RUN=1 train/M06.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M06/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # the record's 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as on the record's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M06
SYMBOL="$PRETRAINED_DIR/dpn92-5k-symbol.json"     # the published DPN-92 ('dpn92-5k')
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/dpn92-5k-0000.params"     # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten                             # the new classifier goes after this layer
INITIALIZER=xavier                                # the new classifier's initialiser in the record (fine-tune.py's)
PRETRAINED_SOURCE="https://github.com/cypw/DPNs"

# Settings of every stage that does not change them below.
DATASET=dataset_c5270         # record: cdiscount_c5270_{train,val}.rec (see above)
OPTIMIZER=adam
LR=0.0001
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
# stderr: Adam lr 1e-4 from the ImageNet weights; stopped after epoch 9
STAGE_1="START_EPOCH=0 END_EPOCH=9"
# stderr2: the same settings; stopped after epoch 11: the submitted checkpoint
STAGE_2="START_EPOCH=9 END_EPOCH=11"
DEFAULT_STAGES="1 2"          # the stages the submitted checkpoint 11 descends from
set +a
exec train/run_model.sh
