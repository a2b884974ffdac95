#!/usr/bin/env bash
# After a preemption (spot, preemptible) or a TERMINATED TPU: one command deletes what is left,
# queues the TPU again (create_tpu.sh), installs the package (setup_tpu.sh) and starts the
# supervised run (train.sh), which resumes from the last checkpoint in gs://. A READY TPU is
# kept: setup and train are safe to rerun (a run in progress is left alone).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/recreate_tpu.sh [--config tpu.env] [--dry-run]"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
check_pod_config
require_gcloud

tpu_state "PREEMPTED $ACCELERATOR_TYPE"
queued_state SUSPENDED
case "$TPU_STATE/$QR_STATE" in
  PREEMPTED/* | TERMINATED/* | */SUSPENDED | */FAILED)
    note "TPU VM $TPU_NAME is ${TPU_STATE:-gone} (queued resource: ${QR_STATE:-none}): deleting it to create it again"
    delete_tpu_now
    ;;
esac
flags=(--config "$CONFIG_FILE")
if ((DRY_RUN)); then flags+=(--dry-run); fi
for step in create_tpu setup_tpu train; do
  bash "$SCRIPTS_DIR/$step.sh" "${flags[@]}"
done
