#!/usr/bin/env bash
# Step 7: start pretraining on the TPU VM under nohup, logs copied to gs://BUCKET/RUN_NAME/logs/.
# Rerunning while it runs does nothing; after a stop or a preemption it resumes from the last
# checkpoint in gs://BUCKET/RUN_NAME/models/MODEL_NAME/. On a pod slice it starts the one
# client, on worker 0, with TPU_NAME and TPU_LOAD_LIBRARY=0 and an hparams layer naming the TPU
# and the slice's cores (lib.sh: check_pod_config, client_hparams).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/train.sh [--config tpu.env] [--dry-run]"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
check_pod_config
require_gcloud

train="python run_pretraining.py --data-dir $DATA_DIR --vocab-file $DATA_DIR/vocab/vocab.txt"
train+=" --model-name $MODEL_NAME --hparams $HPARAMS"
if is_pod; then train+=" --hparams $(client_hparams)"; fi
on_tpu "$(remote_job_command train "$train")"
note "next: scripts/follow.sh (log tail) or scripts/follow.sh --tensorboard"
