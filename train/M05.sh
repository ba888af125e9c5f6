#!/usr/bin/env bash
# M05: DPN-98 fine-tuned from ImageNet-1k on DATASET_A. One recorded run (train/M05/stderr): Adam at lr 1e-4,
# batch 512, HSL 20/20/20, 15 epochs. The original's final prediction used a checkpoint of epoch 20, but no
# record of epochs 16-20 survives: the write-up's accuracy of M05 (0.732641) is the record's epoch 15
# (0.7326), so this script ends at 15: predict with M05:15.
#   DRY_RUN=1 train/M05.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M05/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # the record's 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as on the record's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M05
SYMBOL="$PRETRAINED_DIR/dpn98-symbol.json"        # the published ImageNet-1k DPN-98
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/dpn98-0000.params"        # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten                             # the new classifier goes after this layer
INITIALIZER=xavier                                # the new classifier's initialiser in the record (fine-tune.py's)
PRETRAINED_SOURCE="https://github.com/cypw/DPNs"

# Settings of every stage that does not change them below.
DATASET=dataset_A
OPTIMIZER=adam
LR=0.0001
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=6,10,13,15
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
MAX_RANDOM_H=20               # HSL colour augmentation: max change of hue,
MAX_RANDOM_S=20               #   saturation
MAX_RANDOM_L=20               #   and lightness

# The recorded runs in order: the checkpoint each resumes from (START_EPOCH; 0: PARAMS), its last
# checkpoint (END_EPOCH: one past its last validated epoch, or where the next run resumed), what it changes.
# the run: ran to its end, 15 (the original submitted an unrecorded epoch 20; see above)
STAGE_1="START_EPOCH=0 END_EPOCH=15"
DEFAULT_STAGES="1"            # the only stage
set +a
exec train/run_model.sh
