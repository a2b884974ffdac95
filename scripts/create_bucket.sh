#!/usr/bin/env bash
# Step 1: create the run's bucket in the TPU zone's region (skipped if it exists).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/create_bucket.sh [--config tpu.env] [--dry-run]"
  echo "Creates gs://BUCKET in the region of ZONE, with uniform bucket-level access."
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
require_gcloud

if check no gcloud storage buckets describe "gs://$BUCKET" --project="$PROJECT"; then
  note "bucket gs://$BUCKET exists; skipped (electra-doctor checks that it is in $REGION)"
else
  run gcloud storage buckets create "gs://$BUCKET" --project="$PROJECT" --location="$REGION" --uniform-bucket-level-access
fi
