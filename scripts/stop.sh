#!/usr/bin/env bash
# Stop the supervised run on the TPU VM for good: the trainer's whole process group (so nothing
# keeps holding the TPU), and the supervisor, so it does not start it again, not even after a
# reboot. The checkpoints stay; scripts/train.sh starts again from the last one. The TPU keeps
# billing: scripts/delete_tpu.sh deletes it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/stop.sh [--config tpu.env] [--dry-run]"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
require_gcloud

tpu_state "READY $ACCELERATOR_TYPE"
if [[ "$TPU_STATE" != READY ]]; then
  note "TPU VM $TPU_NAME is ${TPU_STATE:-not there}: nothing runs on it (scripts/delete_tpu.sh stops its billing)"
  exit 0
fi
on_tpu "cd $REMOTE_SRC && $REMOTE_VENV/bin/python -m cloudops.supervisor stop --state-dir $REMOTE_STATE; sudo systemctl disable --now --quiet $UNIT"
