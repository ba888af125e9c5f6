# Sourced by the dataset scripts (after their cd to the repository root): run a step unless its
# outputs are already complete, so that a script that failed in a later step (bson2rec) is re-run
# without redoing an earlier one (the split of the 58 GB train.bson).
# Every command writes its outputs under temporary names and renames them when it succeeds, so an
# output that exists under its final name is whole. A step is complete when all its outputs exist
# and none is older than one of its inputs (a rebuilt input makes its outputs stale). FORCE=1 redoes
# every step. require_files stops before any step on a missing input, naming what makes it.

run_step() {  # run_step WHAT OUTPUT... -- INPUT... -- COMMAND...: COMMAND (given --force when redoing)
  local what="$1" outputs=() inputs=() present=() missing=() force=() stale="" output input
  shift
  while [ "$1" != "--" ]; do outputs+=("$1"); shift; done
  shift
  while [ "$1" != "--" ]; do inputs+=("$1"); shift; done
  shift
  for output in "${outputs[@]}"; do
    if [ -e "$output" ]; then present+=("$output"); else missing+=("$output"); fi
  done
  for output in "${present[@]}"; do
    for input in "${inputs[@]}"; do
      if [ -z "$stale" ] && [ "$input" -nt "$output" ]; then stale="$output is older than $input"; fi
    done
  done
  if [ "${FORCE:-0}" = "1" ]; then
    force=(--force)
  elif [ ${#missing[@]} -eq 0 ] && [ -z "$stale" ]; then
    echo "skipped $what: ${outputs[*]} already complete (FORCE=1 redoes it)" >&2
    return 0
  elif [ -n "$stale" ]; then
    echo "redoing $what: $stale" >&2
    force=(--force)
  elif [ ${#present[@]} -gt 0 ]; then
    echo "redoing $what: ${missing[*]} missing" >&2
    force=(--force)
  fi
  "$@" "${force[@]}"
}

require_files() {  # require_files PATH:HINT...: stop (exit 2) at the first missing PATH, saying where it comes from
  local needed
  for needed in "$@"; do
    if [ ! -f "${needed%%:*}" ]; then
      echo "error: ${needed%%:*} not found: ${needed#*:}" >&2
      exit 2
    fi
  done
}
