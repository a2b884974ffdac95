#!/usr/bin/env bash
# Step 3: create the TPU VM the way Google recommends, through a queued resource: the request
# waits in the zone's queue for capacity (at most QUEUE_WAIT, --valid-until-duration) instead of
# failing on a stockout. CAPACITY=preemptible has no queued form: it is created at once.
# An existing TPU is checked: READY and of ACCELERATOR_TYPE is kept; PREEMPTED or TERMINATED is
# named with the command that recreates it; another type is refused.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/create_tpu.sh [--config tpu.env] [--dry-run]"
  echo "Enables the Cloud TPU API and creates TPU_NAME (ACCELERATOR_TYPE, RUNTIME_VERSION, CAPACITY), waiting up to QUEUE_WAIT."
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
check_pod_config
require_gcloud

# wait_active: poll the queued resource until it is ACTIVE (the TPU exists), FAILED, or QUEUE_WAIT passed.
wait_active() {
  local limit poll="${TPU_POLL_SECONDS:-30}" reason
  limit="${TPU_WAIT_LIMIT_SECONDS:-$(duration_seconds "$QUEUE_WAIT")}" # the environment: for tests
  SECONDS=0
  while :; do
    queued_state ACTIVE
    case "$QR_STATE" in
      ACTIVE)
        note "TPU VM $TPU_NAME is ready (queued resource ACTIVE); next: scripts/setup_tpu.sh"
        return 0
        ;;
      FAILED | SUSPENDED | SUSPENDING | "")
        query reason "" "${GCLOUD_QR[@]}" describe "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
          --format='value(state.failedData.error.message)'
        die "the queued request for TPU $TPU_NAME is ${QR_STATE:-gone}${reason:+: $reason}; rerun scripts/create_tpu.sh to queue again"
        ;;
    esac
    ((SECONDS < limit)) ||
      die "TPU $TPU_NAME still $QR_STATE after QUEUE_WAIT=$QUEUE_WAIT: no $ACCELERATOR_TYPE capacity in $ZONE so far; rerun scripts/create_tpu.sh to queue again, or try another zone"
    note "queued: $QR_STATE for $((SECONDS / 60)) min (waits up to QUEUE_WAIT=$QUEUE_WAIT; Ctrl-C leaves the request queued, a rerun waits again)"
    sleep "$poll"
  done
}

run gcloud services enable tpu.googleapis.com --project="$PROJECT"
tpu_state ""
case "$TPU_STATE" in
  "") ;;
  STOPPED | STOPPING)
    die "TPU VM $TPU_NAME in $ZONE is $TPU_STATE: start it with: gcloud compute tpus tpu-vm start $TPU_NAME --project=$PROJECT --zone=$ZONE"
    ;;
  PREEMPTED | TERMINATED)
    die "TPU VM $TPU_NAME in $ZONE is $TPU_STATE: it cannot run anything again; recreate it and resume training with: scripts/recreate_tpu.sh --config $CONFIG_FILE"
    ;;
  *)
    [[ "$TPU_TYPE" == "$ACCELERATOR_TYPE" ]] ||
      die "TPU VM $TPU_NAME in $ZONE is a $TPU_TYPE, not ACCELERATOR_TYPE=$ACCELERATOR_TYPE: choose another TPU_NAME, or delete it first (scripts/delete_tpu.sh)"
    if [[ "$TPU_STATE" == READY ]]; then
      note "TPU VM $TPU_NAME ($TPU_TYPE) already exists in $ZONE and is READY; skipped (scripts/delete_tpu.sh deletes it)"
      exit 0
    fi
    ;;
esac
if [[ "$CAPACITY" == preemptible ]]; then
  [[ -z "$TPU_STATE" ]] || die "TPU VM $TPU_NAME is $TPU_STATE; rerun when it is READY (scripts/status.sh)"
  note "CAPACITY=preemptible: created at once (no queue; it is stopped at least every 24 h: spot is the better choice)"
  gcloud_or_die "${GCLOUD_TPU[@]}" create "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
    --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" --preemptible
  note "next: scripts/setup_tpu.sh"
  exit 0
fi

queued_state ""
[[ -z "$TPU_STATE" || -n "$QR_STATE" ]] || die "TPU VM $TPU_NAME is $TPU_STATE (created without a queue); rerun when it is READY (scripts/status.sh)"
case "$QR_STATE" in
  FAILED | SUSPENDED)
    note "the queued request for $TPU_NAME is $QR_STATE: deleting it and queueing again"
    delete_tpu_now
    ;;
esac
case "$QR_STATE" in
  "" | FAILED | SUSPENDED)
    capacity=()
    case "$CAPACITY" in
      spot) capacity=(--spot) ;;
      reserved) capacity=(--reserved) ;;
    esac
    gcloud_or_die "${GCLOUD_QR[@]}" create "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" --node-id="$TPU_NAME" \
      --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" "${capacity[@]}" \
      --valid-until-duration="$QUEUE_WAIT"
    ;;
  *) note "TPU $TPU_NAME is already queued ($QR_STATE); waiting for it" ;;
esac
wait_active
