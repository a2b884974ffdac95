#!/usr/bin/env bash
# Step 7: start pretraining on the TPU VM as a systemd service (electra-train) that runs
# cloudops.supervisor: it survives ssh drops and reboots, restarts the trainer after a crash or a
# hang (the presets' watchdog) from the last checkpoint, stops for good when training ends (exit
# 0), on a user error (exit 2) or after the same failure three times, and ships its log and a
# heartbeat to gs://BUCKET/RUN_NAME/logs/ (scripts/status.sh reads them). ON_FINISH=export or
# export-delete exports the model (and deletes the TPU) when training ends.
# It first runs the doctor's smoke test (lib.sh: smoke_command), so a TPU or install that cannot work
# fails in seconds, before the service exists; a running service's busy TPU is never tested.
# Rerunning while it runs does nothing; after scripts/stop.sh or the end it starts a new
# supervised run, which resumes from the last checkpoint in gs://BUCKET/RUN_NAME/models/MODEL_NAME/.
# On a pod slice the one client runs on worker 0 with TPU_NAME and TPU_LOAD_LIBRARY=0 and an
# hparams layer naming the TPU and the slice's cores (lib.sh: check_pod_config, client_hparams).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/train.sh [--config tpu.env] [--dry-run]"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
check_pod_config
require_gcloud

train="python run_pretraining.py --data-dir $DATA_DIR --vocab-file $DATA_DIR/vocab/vocab.txt"
train+=" --model-name $MODEL_NAME $(run_hparams)"
prepare="$REMOTE_VENV/bin/python -m cloudops.supervisor prepare --state-dir $REMOTE_STATE --log-dir $DATA_DIR/logs"
prepare+=" --stall-seconds $STALL_SECONDS"
if is_pod; then prepare+=" --env $(printf %q "TPU_NAME=$TPU_NAME") --env TPU_LOAD_LIBRARY=0"; fi
finish="$(on_finish_command)"
if [[ -n "$finish" ]]; then prepare+=" --on-success '${finish//\'/\'\\\'\'}'"; fi
install="sudo cp $REMOTE_STATE/$UNIT.service /etc/systemd/system/ && sudo systemctl daemon-reload"
install+=" && sudo systemctl enable --now --quiet $UNIT"
running="echo '$UNIT is already running; not started again (scripts/stop.sh stops it)'"
start="$(smoke_command) && $prepare -- $train && $install && echo 'started $UNIT (systemd: restarts after crashes, hangs and reboots)'"
on_tpu "cd $REMOTE_SRC && if systemctl is-active --quiet $UNIT; then $running; else $start; fi"
note "next: scripts/status.sh (no ssh), scripts/follow.sh (log tail) or scripts/follow.sh --tensorboard"
