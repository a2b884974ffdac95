#!/usr/bin/env bash
# Step 3: create the TPU VM (skipped if one of that name exists in the zone).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/create_tpu.sh [--config tpu.env] [--dry-run]"
  echo "Enables the Cloud TPU API and creates TPU_NAME (ACCELERATOR_TYPE, RUNTIME_VERSION, CAPACITY)."
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
check_pod_config
require_gcloud

run gcloud services enable tpu.googleapis.com --project="$PROJECT"
if tpu_exists no; then
  note "TPU VM $TPU_NAME already exists in $ZONE; skipped (scripts/delete_tpu.sh deletes it)"
  exit 0
fi
capacity=()
case "$CAPACITY" in
  spot) capacity=(--spot) ;;
  preemptible) capacity=(--preemptible) ;;
esac
run "${GCLOUD_TPU[@]}" create "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
  --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" "${capacity[@]}"
note "next: scripts/setup_tpu.sh"
