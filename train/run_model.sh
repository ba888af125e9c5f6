#!/usr/bin/env bash
# Shared body of train/M01.sh ... M14.sh, train/demo/D01.sh ... D03.sh and the experiment scripts (through
# train/experiments/run_variants.sh): runs the training stages of the calling script's header, one
# `python -m train.train_model` per stage. Not run alone. The planner is train/stages.py: `python -m
# train.stages --help` says what the header sets and what else it reads from the environment (STAGES,
# LOAD_EPOCH, DRY_RUN, FORCE, NUM_WORKERS, BN_GROUPS, the machine settings).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m train.stages "$@"
