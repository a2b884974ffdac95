#!/usr/bin/env bash
# Step 10: delete the TPU VM (billing stops; the bucket and everything in it stay). A TPU made
# through a queued resource is deleted with it (--force); a queued request still waiting is withdrawn.
# Asks first unless --yes; with no answer (no terminal, empty input) nothing is deleted.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/delete_tpu.sh [--config tpu.env] [--dry-run] [--yes]"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
require_gcloud

tpu_state "READY $ACCELERATOR_TYPE"
queued_state ACTIVE
if [[ -z "$TPU_STATE" && -z "$QR_STATE" ]]; then
  note "no TPU VM $TPU_NAME in $ZONE; nothing to delete"
  exit 0
fi
if ((!ASSUME_YES && !DRY_RUN)); then
  answer=""
  read -r -p "Delete TPU VM $TPU_NAME (${TPU_STATE:-queued: $QR_STATE}) in $ZONE (project $PROJECT)? gs://$BUCKET is kept. [y/N] " answer || true
  if [[ ! "$answer" =~ ^[yY]([eE][sS])?$ ]]; then
    note "not deleted (pass --yes to skip this question)"
    exit 1
  fi
fi
delete_tpu_now
