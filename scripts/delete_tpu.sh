#!/usr/bin/env bash
# Step 10: delete the TPU VM (billing stops; the bucket and everything in it stay).
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

if ! tpu_exists yes; then
  note "no TPU VM $TPU_NAME in $ZONE; nothing to delete"
  exit 0
fi
if ((!ASSUME_YES && !DRY_RUN)); then
  answer=""
  read -r -p "Delete TPU VM $TPU_NAME in $ZONE (project $PROJECT)? gs://$BUCKET is kept. [y/N] " answer || true
  if [[ ! "$answer" =~ ^[yY]([eE][sS])?$ ]]; then
    note "not deleted (pass --yes to skip this question)"
    exit 1
  fi
fi
run "${GCLOUD_TPU[@]}" delete "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" --quiet
