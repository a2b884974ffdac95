#!/usr/bin/env bash
# Step 6: build the pretraining TFRecords on the TPU VM's CPUs from the uploaded corpus and
# vocab, in the background (scripts/follow.sh --job build-data shows progress), at the hparams'
# max_seq_length (HPARAMS, HPARAMS_OVERRIDE), the length the trainer will check them against.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/build_data.sh [--config tpu.env] [--dry-run]"
  echo "gs://BUCKET/RUN_NAME/{corpus/,vocab/vocab.txt} -> gs://BUCKET/RUN_NAME/pretrain_tfrecords/"
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
check_pod_config
require_gcloud

length="$(records_length)"
build="python build_pretraining_dataset.py --corpus-dir $DATA_DIR/corpus --vocab-file $DATA_DIR/vocab/vocab.txt"
build+=" --output-dir $DATA_DIR/pretrain_tfrecords --max-seq-length $length --num-processes \$(nproc)"
on_tpu "$(remote_job_command build-data "$build")"
note "next: scripts/follow.sh --job build-data, then scripts/train.sh"
