#!/usr/bin/env bash
# Step 8: how is it going? The job's state and log tail from the VM, or TensorBoard
# (run locally) on the model directory in the bucket.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/follow.sh [--config tpu.env] [--dry-run] [--job train|build-data] [--lines N] [--tensorboard]"
}

parse_args "$@"
load_config
job=train lines=40 tensorboard=0
set -- "${ARGS[@]}"
while (($#)); do
  case "$1" in
    --job | --lines)
      (($# >= 2)) || die "$1 needs a value"
      if [[ "$1" == --job ]]; then job="$2"; else lines="$2"; fi
      shift
      ;;
    --tensorboard) tensorboard=1 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
[[ "$job" =~ ^[a-z-]+$ ]] || die "--job $job: expected train or build-data"
[[ "$lines" =~ ^[0-9]+$ ]] || die "--lines $lines is not a number"

if ((tensorboard)); then
  note "TensorBoard on http://localhost:6006 (needs local credentials: gcloud auth application-default login)"
  run "$(dirname "$(local_python)")/tensorboard" --logdir "$DATA_DIR/models/$MODEL_NAME" --port 6006
else
  require_gcloud
  on_tpu "LINES_SHOWN=$lines bash $REMOTE_SRC/scripts/remote_job.sh --status $job"
  note "full logs: $DATA_DIR/logs/"
fi
