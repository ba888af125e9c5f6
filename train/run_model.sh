#!/usr/bin/env bash
# Shared body of train/M01.sh ... M14.sh and the experiment scripts: runs the training stages that
# the calling script's header defines, one `python -m train.train_model` per stage. Not run alone.
#
# The header exports (set -a) every recipe setting checked below, the stages STAGE_1, STAGE_2, ...
# in the order the original ran them, each "START_EPOCH=a END_EPOCH=b [WEIGHTS_EPOCH=w] [SETTING=value ...]"
# (the checkpoint it resumes from, 0 for the starting weights PARAMS; its last checkpoint; another
# checkpoint whose weights it starts from, numbered as START_EPOCH; the settings it changes), and DEFAULT_STAGES. A stage stops early where the next stage run resumes from a
# checkpoint inside it (as the original did when it went back to an earlier epoch).
#
# From the environment:
#   STAGES="1 3" | all | default   stages to run, in this order (default: DEFAULT_STAGES)
#   LOAD_EPOCH=N                   resume from checkpoint N: start at the first stage to run that
#                                  trains past epoch N, from checkpoint N; the later stages follow
#   DRY_RUN=1                      print each stage's command and what is missing (# lines); run nothing
#   FORCE=1                        a run from the starting weights trains over an earlier run's checkpoints
#                                  in MODEL_DIR/MODEL_NAME (refused without; LOAD_EPOCH=N resumes instead)
#   NUM_WORKERS, NUM_SERVERS, LAUNCHER, HOSTFILE, KV_STORE   set by train/launch_dist.sh: each stage runs
#                                  on NUM_WORKERS machines through train.launch; BATCH_SIZE is then per machine
# BN_GROUPS (the M-scripts' headers set it to their record's GPU count; unset or empty: one executor per
# device of GPUS) is passed as --bn-groups: the batch is split between that many executors, several on
# a GPU when there are fewer GPUs, so each BatchNorm normalises over as many pictures as the record's did.
# Machine settings, the same for every model: passed to train.train_model only when set in the
# environment, so that its argparse defaults are the one place for their defaults:
#   KV_STORE DTYPE DATA_NTHREADS NUM_CLASSES RGB_MEAN RGB_SCALE TOP_K DISP_BATCHES SEED
set -euo pipefail

LOAD_EPOCH="${LOAD_EPOCH:-0}"
DRY_RUN="${DRY_RUN:-0}"
FORCE="${FORCE:-0}"
MACHINE_FLAGS=(KV_STORE:--kv-store DTYPE:--dtype DATA_NTHREADS:--data-nthreads NUM_CLASSES:--num-classes
               RGB_MEAN:--rgb-mean RGB_SCALE:--rgb-scale TOP_K:--top-k DISP_BATCHES:--disp-batches SEED:--seed)

# Recipe settings a stage may change; the header sets each (its value for every stage that
# does not change it).
STAGE_SETTINGS=(DATASET OPTIMIZER LR LR_FACTOR LR_STEP_EPOCHS MOM WD BATCH_SIZE SMOOTH_ALPHA DROPOUT_RATIO
                IMAGE_SHAPE RESIZE INTER_METHOD RANDOM_CROP RANDOM_MIRROR MAX_RANDOM_H MAX_RANDOM_S MAX_RANDOM_L)
# Header settings that may be empty: GPUS (CPU), NETWORK_ARGS, PARAMS (from scratch), FEATURE_LAYER
# (the network's own), PRETRAINED_SOURCE.
MAY_BE_EMPTY=(GPUS NETWORK_ARGS PARAMS FEATURE_LAYER PRETRAINED_SOURCE)
NOT_EMPTY=(DATA_DIR MODEL_DIR MODEL_NAME SYMBOL DEFAULT_STAGES STAGE_1 "${STAGE_SETTINGS[@]}")

fail() { echo "error: $*" >&2; exit 2; }

check_header() {
  local name
  for name in "${MAY_BE_EMPTY[@]}"; do
    [ -n "${!name+set}" ] || fail "$name is not set: the model script's header must set it (it may be empty)"
  done
  for name in "${NOT_EMPTY[@]}"; do
    [ -n "${!name:-}" ] || fail "$name is not set: the model script's header must set it"
  done
  [[ $LOAD_EPOCH =~ ^[0-9]+$ ]] || fail "LOAD_EPOCH=$LOAD_EPOCH: expected a checkpoint number"
}

# STAGE_WORDS: the words of STAGE_$1, checked (KEY=VALUE, KEY a stage setting or START/END/WEIGHTS_EPOCH).
read_stage() {
  local name="STAGE_$1" word key
  STAGE_WORDS=()
  read -r -d '' -a STAGE_WORDS <<< "${!name}" || true
  for word in "${STAGE_WORDS[@]}"; do
    key="${word%%=*}"
    [[ $word =~ ^[A-Z_0-9]+=[^=]+$ ]] || fail "$name: '$word' is not SETTING=value"
    case " START_EPOCH END_EPOCH WEIGHTS_EPOCH ${STAGE_SETTINGS[*]} " in
      *" $key "*) ;;
      *) fail "$name: $key is not a setting a stage can change (${STAGE_SETTINGS[*]})" ;;
    esac
  done
}

stage_value() {  # stage_value N KEY: the stage's value of KEY, or the header's
  local word
  read_stage "$1"
  for word in "${STAGE_WORDS[@]}"; do
    if [ "${word%%=*}" = "$2" ]; then echo "${word#*=}"; return; fi
  done
  echo "${!2:-}"
}

# NUM_STAGES, and every stage checked now, so that a typo fails before any training.
count_stages() {
  local n=1 start end
  while declare -p "STAGE_$n" > /dev/null 2>&1; do
    read_stage "$n"
    start="$(stage_value "$n" START_EPOCH)"
    end="$(stage_value "$n" END_EPOCH)"
    [[ $start =~ ^[0-9]+$ && $end =~ ^[0-9]+$ ]] || fail "STAGE_$n: needs START_EPOCH=a END_EPOCH=b"
    [ "$end" -ge "$start" ] || fail "STAGE_$n: END_EPOCH $end is before START_EPOCH $start"
    n=$((n + 1))
  done
  NUM_STAGES=$((n - 1))
}

select_stages() {  # SELECTED: the stage numbers STAGES names, in its order
  local spec="${STAGES:-default}" n
  case "$spec" in
    default) spec="$DEFAULT_STAGES" ;;
    all) spec="$(seq -s ' ' 1 "$NUM_STAGES")" ;;
  esac
  SELECTED=()
  for n in ${spec//,/ }; do
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le "$NUM_STAGES" ] ||
      fail "STAGES: no stage '$n' in $MODEL_NAME (stages 1-$NUM_STAGES, all or default)"
    SELECTED+=("$n")
  done
  [ ${#SELECTED[@]} -gt 0 ] || fail "STAGES: no stage named"
}

# The run, one entry per selected stage: P_LOAD[i] -> P_END[i] (equal: nothing to train), P_NOTE[i] why.
make_plan() {
  local i s start end next
  P_LOAD=() P_END=() P_NOTE=()
  for i in "${!SELECTED[@]}"; do
    s="${SELECTED[$i]}"
    start="$(stage_value "$s" START_EPOCH)"
    end="$(stage_value "$s" END_EPOCH)"
    P_NOTE[i]=""
    if [ "$end" -eq "$start" ]; then
      P_NOTE[i]="the record has no complete epoch: nothing to train"
    elif [ $((i + 1)) -lt ${#SELECTED[@]} ]; then
      next="$(stage_value "${SELECTED[$((i + 1))]}" START_EPOCH)"
      if [ "$next" -gt "$start" ] && [ "$next" -lt "$end" ]; then
        P_NOTE[i]="recorded to $end; stops at $next, where stage ${SELECTED[$((i + 1))]} resumes"
        end="$next"
      fi
    fi
    P_LOAD[i]="$start" P_END[i]="$end"
  done
  if [ "$LOAD_EPOCH" -gt 0 ]; then resume_from "$LOAD_EPOCH"; fi
}

resume_from() {  # LOAD_EPOCH: skip the stages before the first one that trains past checkpoint $1
  local i ranges=""
  for i in "${!SELECTED[@]}"; do
    if [ "${P_LOAD[$i]}" -le "$1" ] && [ "$1" -lt "${P_END[$i]}" ]; then
      P_LOAD[i]="$1" P_NOTE[i]="LOAD_EPOCH=$1"
      return
    fi
    ranges+=" ${SELECTED[$i]}:${P_LOAD[$i]}-${P_END[$i]}"
    P_END[i]="${P_LOAD[$i]}" P_NOTE[i]="before LOAD_EPOCH=$1: not run"
  done
  fail "LOAD_EPOCH=$1: no stage to run trains past checkpoint $1 (stage:from-to$ranges)"
}

# The inputs the run needs that are neither on disk nor written by an earlier stage of the run.
missing_inputs() {
  local i dataset part ckpt j made weights seen=" "
  case "$SYMBOL" in
    *.json) [ -f "$SYMBOL" ] || echo "$SYMBOL not found: the network of the starting weights; $(weights_hint)" ;;
  esac
  for i in "${!SELECTED[@]}"; do
    [ "${P_END[$i]}" -gt "${P_LOAD[$i]}" ] || continue
    dataset="$(stage_value "${SELECTED[$i]}" DATASET)"
    for part in train valid; do
      case "$seen" in *" $dataset/$part "*) continue ;; esac
      seen+="$dataset/$part "
      [ -f "$DATA_DIR/$dataset/$part.rec" ] || echo "$DATA_DIR/$dataset/$part.rec not found: run data/create_$dataset.sh first"
    done
    if [ "${P_LOAD[$i]}" -eq 0 ]; then
      [ -z "$PARAMS" ] || [ -f "$PARAMS" ] || echo "$PARAMS not found: the starting weights; $(weights_hint)"
      continue
    fi
    weights="$(weights_epoch "$i")"
    ckpt="$(checkpoint "$weights")" made=0
    for ((j = 0; j < i; j++)); do
      if [ "${P_LOAD[$j]}" -lt "$weights" ] && [ "$weights" -le "${P_END[$j]}" ]; then made=1; fi
    done
    [ "$made" = 1 ] || [ -f "$ckpt" ] ||
      echo "$ckpt not found: stage ${SELECTED[$i]} resumes from it; run the stages before it (STAGES, LOAD_EPOCH)"
  done
}

# A run whose first stage starts from the starting weights onto an earlier run's checkpoints: refused
# without FORCE=1 (a re-run without LOAD_EPOCH would train over a finished model).
earlier_run() {
  local i
  [ "$FORCE" != 1 ] || return 0
  for i in "${!SELECTED[@]}"; do
    [ "${P_END[$i]}" -gt "${P_LOAD[$i]}" ] || continue
    [ "${P_LOAD[$i]}" -eq 0 ] || return 0
    if compgen -G "$PREFIX-[0-9][0-9][0-9][0-9].params" > /dev/null || [ -e "$PREFIX-metrics.csv" ]; then
      echo "$PREFIX: an earlier run's checkpoints are there; resume with LOAD_EPOCH=N, set MODEL_DIR" \
        "elsewhere, or FORCE=1 to train over them"
    fi
    return 0
  done
}

weights_hint() {  # where the starting weights come from: a URL (or the zoo import), or the script that makes them
  local zoo
  case "$PRETRAINED_SOURCE" in
    http*) zoo="$(zoo_network "$SYMBOL")"
      if [ -n "$zoo" ]; then
        echo "download them from $PRETRAINED_SOURCE, or make them from the gluoncv2 zoo: python -m" \
          "train.import_weights --zoo gluoncv2 --model $zoo --out ${SYMBOL%-symbol.json}"
      else
        echo "download them from $PRETRAINED_SOURCE (the gluoncv2 zoo has no weights for this network)"
      fi ;;
    *) echo "${PRETRAINED_SOURCE:-see PARAMS in the model script}" ;;
  esac
}

zoo_network() {  # the gluoncv2 network train.import_weights makes a published symbol's checkpoint from
  case "$(basename "$1")" in
    resnext-101-symbol.json) echo resnext101_32x4d ;;
    resnext-101-64x4d-symbol.json) echo resnext101_64x4d ;;
    densenet-161-symbol.json) echo densenet161 ;;
    dpn98-symbol.json) echo dpn98 ;;
    dpn131-symbol.json) echo dpn131 ;;
  esac
}

checkpoint() { printf '%s-%04d.params' "$PREFIX" "$1"; }

# The checkpoint whose weights stage i of the run starts from: its START_EPOCH's, unless the stage
# says WEIGHTS_EPOCH (the original resumed M08's NADAM runs from epoch 15's weights numbered as 18).
# A LOAD_EPOCH inside the stage resumes that checkpoint's own weights.
weights_epoch() {
  local weights
  weights="$(stage_value "${SELECTED[$1]}" WEIGHTS_EPOCH)"
  if [ -n "$weights" ] && [ "${P_LOAD[$1]}" -eq "$(stage_value "${SELECTED[$1]}" START_EPOCH)" ]; then
    echo "$weights"
  else
    echo "${P_LOAD[$1]}"
  fi
}

# CMD: the command of stage $1 from checkpoint $2 to $3 (weights of checkpoint $4), its settings
# changed as the stage says.
stage_command() {
  local name word pair launch=() network_args=()
  for name in "${STAGE_SETTINGS[@]}"; do local "$name=${!name}"; done
  read_stage "$1"
  for word in "${STAGE_WORDS[@]}"; do
    case "${word%%=*}" in START_EPOCH | END_EPOCH | WEIGHTS_EPOCH) ;; *) printf -v "${word%%=*}" '%s' "${word#*=}" ;; esac
  done
  read -r -a network_args <<< "$NETWORK_ARGS"
  if [ -n "${NUM_WORKERS:-}" ]; then  # under train/launch_dist.sh: the same command on every worker
    launch=(python -m train.launch -n "$NUM_WORKERS" -s "${NUM_SERVERS:-$NUM_WORKERS}"
            --launcher "${LAUNCHER:-ssh}" ${HOSTFILE:+-H "$HOSTFILE"}
            --log-dir "$(dirname "$PREFIX")/launch_logs" --)
  fi
  CMD=("${launch[@]}" python -m train.train_model --symbol "$SYMBOL" "${network_args[@]}")
  if [ "$2" -eq 0 ] && [ -n "$PARAMS" ]; then CMD+=(--params "$PARAMS"); fi
  if [ "$4" -ne "$2" ]; then CMD+=(--params "$(checkpoint "$4")"); fi
  if [ -n "$FEATURE_LAYER" ]; then CMD+=(--feature-layer "$FEATURE_LAYER"); fi
  if [ "$FORCE" = 1 ] && [ "$2" -eq 0 ]; then CMD+=(--force); fi
  CMD+=(--gpus "$GPUS")
  if [ -n "${BN_GROUPS:-}" ]; then CMD+=(--bn-groups "$BN_GROUPS"); fi
  CMD+=(--data-train "$DATA_DIR/$DATASET/train.rec" --data-val "$DATA_DIR/$DATASET/valid.rec"
        --model-prefix "$PREFIX" --load-epoch "$2" --num-epochs "$3"
        --optimizer "$OPTIMIZER" --lr "$LR" --lr-factor "$LR_FACTOR" --lr-step-epochs "$LR_STEP_EPOCHS"
        --mom "$MOM" --wd "$WD" --batch-size "$BATCH_SIZE" --smooth-alpha "$SMOOTH_ALPHA"
        --dropout-ratio "$DROPOUT_RATIO" --image-shape "$IMAGE_SHAPE" --resize "$RESIZE"
        --inter-method "$INTER_METHOD" --random-crop "$RANDOM_CROP" --random-mirror "$RANDOM_MIRROR"
        --max-random-h "$MAX_RANDOM_H" --max-random-s "$MAX_RANDOM_S" --max-random-l "$MAX_RANDOM_L")
  for pair in "${MACHINE_FLAGS[@]}"; do  # only those set: train.train_model's defaults otherwise
    name="${pair%%:*}"
    if [ -n "${!name:-}" ]; then CMD+=("${pair#*:}" "${!name}"); fi
  done
}

shell_words() {  # the words, quoted only where a shell needs it
  local word out=() quote="'\\''"
  for word; do
    if [[ $word =~ ^[A-Za-z0-9_./:,=+@%-]+$ ]]; then out+=("$word"); else out+=("'${word//\'/$quote}'"); fi
  done
  echo "${out[*]}"
}

stage_line() {  # a comment line saying what stage i of the run does
  local i="$1" what
  if [ "${P_END[$i]}" -le "${P_LOAD[$i]}" ]; then what="skipped"
  else
    what="epochs $((P_LOAD[i] + 1))-${P_END[$i]}"
    if [ "${P_END[$i]}" -eq $((P_LOAD[i] + 1)) ]; then what="epoch ${P_END[$i]}"; fi
    if [ "${P_LOAD[$i]}" -eq 0 ]; then what+=" from the starting weights"
    elif [ "$(weights_epoch "$i")" -ne "${P_LOAD[$i]}" ]; then
      what+=" from checkpoint $(weights_epoch "$i")'s weights, numbered from ${P_LOAD[$i]}"
    else what+=" from checkpoint ${P_LOAD[$i]}"; fi
  fi
  echo "# $MODEL_NAME stage ${SELECTED[$i]}: $what${P_NOTE[$i]:+ (${P_NOTE[$i]})}"
}

run_stages() {
  local i missing refused log="$PREFIX-train.log"
  missing="$(missing_inputs)"
  refused="$(earlier_run)"
  if [ "$DRY_RUN" = 1 ]; then
    if [ -n "$missing" ]; then sed 's/^/# missing: /' <<< "$missing"; fi
    if [ -n "$refused" ]; then sed 's/^/# refused: /' <<< "$refused"; fi
    for i in "${!SELECTED[@]}"; do
      stage_line "$i"
      [ "${P_END[$i]}" -gt "${P_LOAD[$i]}" ] || continue
      stage_command "${SELECTED[$i]}" "${P_LOAD[$i]}" "${P_END[$i]}" "$(weights_epoch "$i")"
      shell_words "${CMD[@]}"
    done
    return
  fi
  if [ -n "$missing$refused" ]; then sed '/^$/d; s/^/error: /' <<< "$missing"$'\n'"$refused" >&2; exit 2; fi
  if [ -n "$GPUS" ]; then python -m train.devices --gpus "$GPUS" || exit 2; fi
  mkdir -p "$(dirname "$PREFIX")"
  export MXNET_CUDNN_AUTOTUNE_DEFAULT="${MXNET_CUDNN_AUTOTUNE_DEFAULT:-0}"  # autotune can hang (as the original set)
  for i in "${!SELECTED[@]}"; do
    stage_line "$i" | tee -a "$log"
    [ "${P_END[$i]}" -gt "${P_LOAD[$i]}" ] || continue
    stage_command "${SELECTED[$i]}" "${P_LOAD[$i]}" "${P_END[$i]}" "$(weights_epoch "$i")"
    shell_words "${CMD[@]}" | tee -a "$log"
    "${CMD[@]}" 2>&1 | tee -a "$log"
  done
}

check_header
PREFIX="$MODEL_DIR/$MODEL_NAME/$MODEL_NAME"
count_stages
select_stages
make_plan
run_stages
