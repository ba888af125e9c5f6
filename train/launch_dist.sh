#!/usr/bin/env bash
# Run one of the model scripts on several machines with MXNet's parameter-server kvstore:
#   HOSTFILE=hosts NUM_WORKERS=4 train/launch_dist.sh train/M10.sh
# Each worker machine runs each stage's training command on its own GPUs and reads its own part
# of the .rec; BATCH_SIZE in the model script is per machine. The settings below reach
# train/run_model.sh under the same names (it launches each stage through train.launch). The repository, the .venv, DATA_DIR,
# PRETRAINED_DIR and MODEL_DIR must be at the same paths on every host (e.g. a shared disk).
set -euo pipefail
CALLER_DIR="$PWD"  # the model script, HOSTFILE and a relative DATA_DIR/MODEL_DIR/PRETRAINED_DIR are taken from here
cd "$(dirname "$0")/.."
source scripts/paths.sh

SCRIPT_ARG="${1:-}"
MODEL_SCRIPT="$(dir_from_env SCRIPT_ARG "")"
[ -n "$MODEL_SCRIPT" ] || { echo "usage: train/launch_dist.sh train/Mxx.sh" >&2; exit 2; }
HOSTFILE="$(dir_from_env HOSTFILE hosts)"       # one host per line: host or host:ssh_port
NUM_WORKERS="${NUM_WORKERS:-2}"                 # worker machines (processes with --launcher local)
NUM_SERVERS="${NUM_SERVERS:-$NUM_WORKERS}"      # parameter servers, spread over the hosts like the workers
LAUNCHER="${LAUNCHER:-ssh}"                     # ssh; local runs every process on this machine
KV_STORE="${KV_STORE:-dist_sync}"               # dist_device_sync aggregates on the GPUs first

if [ "$LAUNCHER" = ssh ] && [ ! -f "$HOSTFILE" ]; then
  echo "error: $HOSTFILE not found: list the machines, one per line (or set HOSTFILE)" >&2
  exit 2
fi
export NUM_WORKERS NUM_SERVERS LAUNCHER KV_STORE
if [ "$LAUNCHER" = ssh ]; then export HOSTFILE; else unset HOSTFILE; fi
for name in DATA_DIR MODEL_DIR PRETRAINED_DIR; do  # the model script resolves them from here, the repository
  if [ -n "${!name:-}" ]; then export "$name=$(dir_from_env "$name" "")"; fi
done
exec "$MODEL_SCRIPT"
