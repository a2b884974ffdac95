#!/usr/bin/env bash
# Step 7: start pretraining on the TPU VM under nohup (on every host of a pod), logs copied
# to gs://BUCKET/RUN_NAME/logs/. Rerunning while it runs does nothing; after a stop or a
# preemption it resumes from the last checkpoint in gs://BUCKET/RUN_NAME/models/MODEL_NAME/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/train.sh [--config tpu.env] [--dry-run]"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
require_gcloud

train="python run_pretraining.py --data-dir $DATA_DIR --vocab-file $DATA_DIR/vocab/vocab.txt"
train+=" --model-name $MODEL_NAME --hparams $HPARAMS"
on_tpu "$WORKERS" "$(remote_job_command train "$train")"
note "next: scripts/follow.sh (log tail) or scripts/follow.sh --tensorboard"
