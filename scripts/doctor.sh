#!/usr/bin/env bash
# Step 5: preflight before hours are spent: electra-doctor on the TPU VM (its TPU cores, the
# VM service account's access to the bucket, bucket region, data manifest vs hparams).
# --local runs the same checks here, without the TPU one.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/doctor.sh [--config tpu.env] [--dry-run] [--local]"
}

parse_args "$@"
load_config
check_pod_config
where=tpu
case "${ARGS[*]:-}" in
  "") ;;
  --local) where=local ;;
  *) die "unknown argument: ${ARGS[0]} (see --help)" ;;
esac

checks=(--data-dir "$DATA_DIR" --model-name "$MODEL_NAME" --zone "$ZONE" --accelerator-type "$ACCELERATOR_TYPE")
if [[ "$where" == local ]]; then
  override=()
  if [[ -n "$HPARAMS_OVERRIDE" ]]; then override=(--hparams "$HPARAMS_OVERRIDE"); fi
  run "$(local_python)" -m cloudops.doctor "${checks[@]}" --hparams "$REPO_DIR/$HPARAMS" "${override[@]}" --tpu none
else
  require_gcloud
  # the hparams and the TPU exactly as train.sh gives them to the trainer
  client="$(run_hparams) --tpu local"
  if is_pod; then client="$(run_hparams) --tpu $(printf %q "$TPU_NAME")"; fi
  on_tpu "cd $REMOTE_SRC && ${CLIENT_ENV}$REMOTE_VENV/bin/electra-doctor $(quote_cmd "${checks[@]}") $client"
fi
