#!/usr/bin/env bash
# M10: ResNeXt-101 (32x4d) fine-tuned from ImageNet-1k; the original submitted its checkpoint of epoch 19.
# Its 7 recorded runs (train/M10/stderr ... stderr7): Adam at lr 5e-4, batch 512, HSL 20/20/20 from epoch 12,
# then SGD at lr 0.05 from epoch 16. Run 4 (stderr4, HSL 30) is a branch the submitted checkpoint does not
# descend from: run 5 went back to checkpoint 11.
# Data: cdiscount_c5270 (11,752,908 training, 618,385 validation images), the original's first 95/5 split, by
# picture (a product's pictures can land on both sides), rebuilt draw for draw by data/create_dataset_c5270.sh.
#   DRY_RUN=1 train/M10.sh prints the commands; STAGES=all runs every recorded stage;
#   LOAD_EPOCH=N resumes from checkpoint N (see train/run_model.sh).
set -euo pipefail
CALLER_DIR="$PWD"  # a relative DATA_DIR, MODEL_DIR or PRETRAINED_DIR is taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh
set -a  # every setting below goes to train/run_model.sh

DATA_DIR="$(dir_from_env DATA_DIR data_dir)"                # dataset_A/B/C .rec files
PRETRAINED_DIR="$(dir_from_env PRETRAINED_DIR pretrained)"  # published ImageNet checkpoints
MODEL_DIR="$(dir_from_env MODEL_DIR models)"                # checkpoints go to MODEL_DIR/M10/
GPUS="${GPUS-0,1,2,3,4,5,6,7}"                              # the record's 8 GPUs (empty: CPU)
BN_GROUPS="${BN_GROUPS-8}"                                  # BatchNorm over batch/8 as on the record's 8 GPUs, on any GPUS (empty: one per GPU)

MODEL_NAME=M10
SYMBOL="$PRETRAINED_DIR/resnext-101-symbol.json"  # the published ImageNet-1k ResNeXt-101 (32x4d)
NETWORK_ARGS=""                                   # more network flags of train.train_model
PARAMS="$PRETRAINED_DIR/resnext-101-0000.params"  # starting weights of a stage that starts at 0
FEATURE_LAYER=flatten0                            # the new classifier goes after this layer
INITIALIZER=xavier                                # the new classifier's initialiser in the record (fine-tune.py's)
PRETRAINED_SOURCE="http://data.mxnet.io/models/imagenet/resnext/101-layers/"

# Settings of every stage that does not change them below.
DATASET=dataset_c5270         # record: cdiscount_c5270_{train,val}.rec (see above)
OPTIMIZER=adam
LR=0.0005
LR_FACTOR=0.2                 # lr multiplier after each step epoch
LR_STEP_EPOCHS=6,10,13
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
# stderr: Adam lr 5e-4 from the ImageNet weights (wd 1e-5: no effect on Adam); stopped after epoch 4
STAGE_1="START_EPOCH=0 END_EPOCH=4 WD=0.00001"
# stderr2: wd 4e-5 from here on; stopped after epoch 8
STAGE_2="START_EPOCH=4 END_EPOCH=8"
# stderr3: lr steps 6,8,10; ran to its end, 12, but stderr5 restarts from 11
STAGE_3="START_EPOCH=8 END_EPOCH=12 LR_STEP_EPOCHS=6,8,10"
# stderr4: HSL 30/30/30 from 12: a branch the submitted checkpoint does not descend from (not in the default run)
STAGE_4="START_EPOCH=12 END_EPOCH=16 LR_STEP_EPOCHS=6,16,20
         MAX_RANDOM_H=30 MAX_RANDOM_S=30 MAX_RANDOM_L=30"
# stderr5: back to checkpoint 11 with HSL 20/20/20 and lr steps 8,11,15; stopped after epoch 15
STAGE_5="START_EPOCH=11 END_EPOCH=15 LR_STEP_EPOCHS=8,11,15
         MAX_RANDOM_H=20 MAX_RANDOM_S=20 MAX_RANDOM_L=20"
# stderr6: no HSL, lr steps 8,11,20; stopped after epoch 18, but stderr7 restarts from 16
STAGE_6="START_EPOCH=15 END_EPOCH=18 LR_STEP_EPOCHS=8,11,20"
# stderr7: SGD lr 0.05; ran to its end, 20 (its epoch 19 is the submitted checkpoint)
STAGE_7="START_EPOCH=16 END_EPOCH=20 OPTIMIZER=sgd LR=0.05 LR_FACTOR=0.1 LR_STEP_EPOCHS=8,18,20"
DEFAULT_STAGES="1 2 3 5 6 7"  # the stages the submitted checkpoint 19 descends from
set +a
exec train/run_model.sh
