#!/usr/bin/env bash
# Before committing days: a short run of the real thing on the TPU VM (same data, hparams and TPU)
# into models/MODEL_NAME-smoke/ (emptied first), which reports examples/s against the rate
# expected for ACCELERATOR_TYPE and the time and cost of the full run (workflow/smoke.py).
# --profile also writes a TensorBoard profile of one host call there. Runs in the foreground;
# refused while the supervised run (train.sh) holds the TPU.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/smoke.sh [--config tpu.env] [--dry-run] [--steps N] [--profile]   (default N: 5 host calls)"
}

parse_args "$@"
load_config
check_pod_config
extra=""
set -- "${ARGS[@]}"
while (($#)); do
  case "$1" in
    --steps)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--steps needs a number of steps"
      extra+=" --steps $2"
      shift
      ;;
    --profile) extra+=" --profile" ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
require_gcloud

smoke="python -m workflow.smoke --data-dir $DATA_DIR --vocab-file $DATA_DIR/vocab/vocab.txt --model-name $MODEL_NAME"
smoke+=" $(run_hparams) --accelerator-type $ACCELERATOR_TYPE --capacity $CAPACITY$extra"
busy="echo 'error: $UNIT is running and holds the TPU: scripts/stop.sh first' >&2; exit 2"
on_tpu "cd $REMOTE_SRC && if systemctl is-active --quiet $UNIT; then $busy; fi && ${CLIENT_ENV}PATH=$REMOTE_VENV/bin:\$PATH $smoke"
