#!/usr/bin/env bash
# Step 9: export the latest checkpoint to Hugging Face format on the VM (its staging folder
# there is replaced on a rerun), store it in gs://BUCKET/RUN_NAME/export/MODEL_NAME/, and
# download it here (identical files skipped).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/export.sh [--config tpu.env] [--dry-run] [--output DIR]   (default DIR: export/MODEL_NAME)"
}

parse_args "$@"
load_config
check_pod_config
output="export/$MODEL_NAME"
set -- "${ARGS[@]}"
while (($#)); do
  case "$1" in
    --output)
      (($# >= 2)) || die "--output needs a folder"
      output="$2"
      shift
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
require_gcloud

remote_out="\$HOME/electra-export/$MODEL_NAME"
export_cmd="cd $REMOTE_SRC && ${CLIENT_ENV}$REMOTE_VENV/bin/electra-export --model-dir $DATA_DIR/models/$MODEL_NAME --output-dir $remote_out --overwrite"
export_cmd+=" && $REMOTE_VENV/bin/python -m cloudops.storage upload $remote_out $DATA_DIR/export/$MODEL_NAME"
on_tpu "$export_cmd"
run "$(local_python)" -m cloudops.storage --project="$PROJECT" download "$DATA_DIR/export/$MODEL_NAME" "$output"
note "next: scripts/delete_tpu.sh (the bucket keeps data, checkpoints, logs and the export)"
