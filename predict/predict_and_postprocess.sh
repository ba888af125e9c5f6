#!/usr/bin/env bash
# Shared body of run_predict.sh and run_validate.sh: predict BSON with the ensemble, then
# overwrite the products whose product hash is known from training in SUBMITTED (the sum over
# the pictures of all models, OUTPUT's eN.m1 variant, as the solution did) and write FINAL.
# Every setting comes from the calling script's environment.
set -euo pipefail
cd "$(dirname "$0")/.."

SYMBOLS=()
PARAMS=()
read -r -a MODEL_LIST <<< "$MODELS"
for entry in "${MODEL_LIST[@]}"; do
  name="${entry%%:*}"
  epoch="${entry##*:}"
  SYMBOLS+=("$MODEL_DIR/$name/$name-symbol.json")
  PARAMS+=("$MODEL_DIR/$name/$name-$(printf %04d "$epoch").params")
done
for path in "$BSON" "$CATEGORY_CSV" "$MD5_DICT" "${SYMBOLS[@]}" "${PARAMS[@]}"; do
  if [ ! -f "$path" ]; then
    echo "error: $path not found (train the models with train/M*.sh, build the dictionaries with" \
      "data/create_train_md5_dict.sh, or set MODEL_DIR / DATA_DIR)" >&2
    exit 2
  fi
done
FORCE_FLAG=()
if [ "${FORCE:-0}" = "1" ]; then FORCE_FLAG=(--force); fi
read -r -a ENSEMBLE_LIST <<< "$ENSEMBLES"
NUM_MODELS=${#MODEL_LIST[@]}
# SUBMITTED is the all-models variant: make sure it is written
if [[ " ${ENSEMBLE_LIST[*]} " != *" $NUM_MODELS "* ]]; then ENSEMBLE_LIST+=("$NUM_MODELS"); fi

mkdir -p "$(dirname "$OUTPUT")"
python -m predict.predict --bson "$BSON" --category-csv "$CATEGORY_CSV" \
  --symbol "${SYMBOLS[@]}" --params "${PARAMS[@]}" \
  --gpus "$GPUS" --batch-size "$BATCH_SIZE" ${IMAGE_SHAPE:+--image-shape "$IMAGE_SHAPE"} \
  ${RESIZE:+--resize "$RESIZE"} ${RGB_MEAN:+--rgb-mean "$RGB_MEAN"} ${RGB_SCALE:+--rgb-scale "$RGB_SCALE"} \
  --multi-view "$MULTI_VIEW" \
  --md5-dict "$MD5_DICT" --md5-dict-type "$MD5_DICT_TYPE" --ensembles "${ENSEMBLE_LIST[@]}" \
  --num-procs "$NUM_PROCS" --output "$OUTPUT" "${FORCE_FLAG[@]}" ${EXTRA_PREDICT_ARGS:-}

if [ ! -f "$SUBMITTED" ]; then
  echo "error: $SUBMITTED was not written: SUBMITTED must be OUTPUT's e$NUM_MODELS.m1 variant" >&2
  exit 2
fi
python -m predict.md5_predict --md5-dict "$MD5_DICT" --bson "$BSON" --output "$OVERRIDES" "${FORCE_FLAG[@]}"
python -m predict.postprocess_product --src "$SUBMITTED" --md5 "$OVERRIDES" --output "$FINAL" "${FORCE_FLAG[@]}"
