#!/usr/bin/env bash
# Step 8: how is it going? The run's state line and log tail: from the VM when the TPU is READY,
# else from the copies in gs://BUCKET/RUN_NAME/logs/ (a preempted or deleted TPU's last words).
# Or TensorBoard (run locally) on the model directory in the bucket.
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
[[ "$job" =~ ^(train|build-data)$ ]] || die "--job $job: expected train or build-data"
[[ "$lines" =~ ^[0-9]+$ ]] || die "--lines $lines is not a number"

if ((tensorboard)); then
  note "TensorBoard on http://localhost:6006 (needs local credentials: gcloud auth application-default login)"
  run "$(local_tool tensorboard)" --logdir "$DATA_DIR/models/$MODEL_NAME" --port 6006
  exit 0
fi
require_gcloud
tpu_state "READY $ACCELERATOR_TYPE"
if [[ "$TPU_STATE" == READY && "$job" == train ]]; then
  on_tpu "cd $REMOTE_SRC && $REMOTE_VENV/bin/python -m cloudops.supervisor status $REMOTE_STATE/heartbeat.json --lines $lines"
elif [[ "$TPU_STATE" == READY ]]; then
  on_tpu "LINES_SHOWN=$lines bash $REMOTE_SRC/scripts/remote_job.sh --status $job"
elif [[ "$job" == train ]]; then
  note "TPU VM $TPU_NAME is ${TPU_STATE:-not there}: the run's heartbeat and log as last shipped to $DATA_DIR/logs/"
  run "$(local_python)" -m cloudops.supervisor status "$(heartbeat_uri)" --lines "$lines"
else
  die "TPU VM $TPU_NAME is ${TPU_STATE:-not there}; the $job log is in $DATA_DIR/logs/ (python -m cloudops.storage download $DATA_DIR/logs logs)"
fi
note "full logs: $DATA_DIR/logs/"
