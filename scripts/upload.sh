#!/usr/bin/env bash
# Step 2: upload the corpus, the vocab and/or built records to gs://BUCKET/RUN_NAME/ with
# cloudops.storage (parallel, resumable, identical objects skipped: safe to rerun).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/upload.sh [--config tpu.env] [--dry-run] [--corpus PATH] [--vocab PATH] [--records DIR]"
  echo "  --corpus PATH   cleaned text (file or folder)      -> gs://BUCKET/RUN_NAME/corpus/"
  echo "  --vocab PATH    vocab.txt or the electra-vocab folder -> gs://BUCKET/RUN_NAME/vocab/"
  echo "  --records DIR   records built locally               -> gs://BUCKET/RUN_NAME/pretrain_tfrecords/"
}

parse_args "$@"
load_config
declare -A targets=([--corpus]=corpus [--vocab]=vocab [--records]=pretrain_tfrecords)
uploads=()
set -- "${ARGS[@]}"
while (($#)); do
  [[ -n "${targets[$1]:-}" ]] || die "unknown argument: $1 (see --help)"
  (($# >= 2)) || die "$1 needs a path"
  [[ -e "$2" ]] || die "$1 $2: no such file or folder"
  uploads+=("$2" "$DATA_DIR/${targets[$1]}")
  shift 2
done
((${#uploads[@]})) || die "nothing to upload: give --corpus, --vocab and/or --records"

python="$(local_python)"
for ((i = 0; i < ${#uploads[@]}; i += 2)); do
  run "$python" -m cloudops.storage --project="$PROJECT" upload "${uploads[i]}" "${uploads[i + 1]}"
done
