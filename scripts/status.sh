#!/usr/bin/env bash
# How is the run? From the laptop, with no ssh: the TPU's state (gcloud) and the run's last
# step, examples/s and heartbeat age (the supervisor's heartbeat in gs://BUCKET/RUN_NAME/logs/).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/status.sh [--config tpu.env] [--dry-run]"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
require_gcloud

# say: the report on stdout (a dry run keeps stdout for commands: it goes to stderr there)
say() {
  if ((DRY_RUN)); then note "$*"; else echo "$*"; fi
}

tpu_state "READY $ACCELERATOR_TYPE"
queued_state ACTIVE
case "$TPU_STATE" in
  "") say "TPU $TPU_NAME: none in $ZONE${QR_STATE:+ (queued resource: $QR_STATE)}" ;;
  PREEMPTED | TERMINATED) say "TPU $TPU_NAME ($TPU_TYPE, $CAPACITY): $TPU_STATE; resume with: scripts/recreate_tpu.sh --config $CONFIG_FILE" ;;
  *) say "TPU $TPU_NAME ($TPU_TYPE, $CAPACITY): $TPU_STATE${QR_STATE:+ (queued resource: $QR_STATE)}" ;;
esac
run "$(local_python)" -m cloudops.supervisor status "$(heartbeat_uri)"
