#!/usr/bin/env bash
# Step 9: export a checkpoint to Hugging Face format HERE (CPU only, no TPU needed: it reads the
# checkpoints from gs://BUCKET/RUN_NAME/models/MODEL_NAME/, so it works after a preemption or
# after delete_tpu.sh), then store the folders in gs://BUCKET/RUN_NAME/export/MODEL_NAME/.
# (ON_FINISH=export in tpu.env does the same on the VM when training ends.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/export.sh [--config tpu.env] [--dry-run] [--output DIR] [--step N]   (default DIR: export/MODEL_NAME, N: the latest)"
}

parse_args "$@"
load_config
output="export/$MODEL_NAME"
step=()
set -- "${ARGS[@]}"
while (($#)); do
  case "$1" in
    --output | --step)
      (($# >= 2)) || die "$1 needs a value"
      if [[ "$1" == --output ]]; then output="$2"; else step=(--step "$2"); fi
      shift
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

note "exporting here from $DATA_DIR/models/$MODEL_NAME (needs local credentials: gcloud auth application-default login)"
run "$(local_tool electra-export)" --model-dir "$DATA_DIR/models/$MODEL_NAME" --output-dir "$output" \
  "${step[@]}" --overwrite
run "$(local_python)" -m cloudops.storage --project="$PROJECT" upload "$output" "$DATA_DIR/export/$MODEL_NAME"
note "next: scripts/delete_tpu.sh if the TPU still exists (the bucket keeps data, checkpoints, logs and the export)"
