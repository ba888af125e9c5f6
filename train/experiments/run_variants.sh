#!/usr/bin/env bash
# Shared body of the experiment scripts (train/experiments/*/run.sh): one single-stage train/run_model.sh
# run per variant, from the starting weights to checkpoint NUM_EPOCHS. Not meant to be run alone.
# The calling script exports (set -a) the settings of train/run_model.sh, NUM_EPOCHS, and the variants
# VARIANT_1, VARIANT_2, ...: "name [SETTING=value ...]", the settings each changes.
# From the environment: VARIANTS="name ..." runs only those; DRY_RUN and LOAD_EPOCH as train/run_model.sh.
set -euo pipefail
: "${NUM_EPOCHS:?NUM_EPOCHS is not set: the experiment script's header must set it}"
: "${VARIANT_1:?VARIANT_1 is not set: the experiment script's header must set it}"

NAMES=() CHANGES=()
n=1
while declare -p "VARIANT_$n" > /dev/null 2>&1; do
  spec="VARIANT_$n"
  read -r name changes <<< "${!spec}"
  NAMES+=("$name") CHANGES+=("$changes")
  n=$((n + 1))
done

for wanted in ${VARIANTS:-}; do
  case " ${NAMES[*]} " in
    *" $wanted "*) ;;
    *) echo "error: VARIANTS: no variant '$wanted' (${NAMES[*]})" >&2; exit 2 ;;
  esac
done

for i in "${!NAMES[@]}"; do
  case " ${VARIANTS:-${NAMES[*]}} " in *" ${NAMES[$i]} "*) ;; *) continue ;; esac
  MODEL_NAME="${NAMES[$i]}" STAGE_1="START_EPOCH=0 END_EPOCH=$NUM_EPOCHS ${CHANGES[$i]}" DEFAULT_STAGES=1 STAGES=1 \
    train/run_model.sh
done
