#!/usr/bin/env bash
# Step 4: put the package on the TPU VM in ~/electra-venv with exactly one TensorFlow, and check
# the installed versions against each other. Two install paths, chosen by RUNTIME_VERSION
# (docs/tpu_software.md): on Google's TensorFlow image (tpu-vm-tf-2.18.0-pjrt, the default) the
# image's TensorFlow and libtpu as they are; on a base image the TPU build from the package index
# (`tpu` extra, TPU_TENSORFLOW). On a pod slice only worker 0 gets it, with the libraries that
# resolve the TPU by name: it runs the one client; the other hosts run the image's TPU runtime
# and need nothing. Safe to rerun: it updates in place.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

usage() {
  echo "usage: scripts/setup_tpu.sh [--config tpu.env] [--dry-run]"
  echo "SOURCE empty: ships this checkout's committed HEAD (git archive); else clones SOURCE at SOURCE_REF."
}

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unknown argument: ${ARGS[0]}"
load_config
check_pod_config
require_gcloud

if [[ -n "$SOURCE" ]]; then
  fetch="(test -d $REMOTE_SRC/.git || git clone --quiet $(printf %q "$SOURCE") $REMOTE_SRC)"
  fetch+=" && git -C $REMOTE_SRC fetch --quiet origin $(printf %q "$SOURCE_REF")"
  fetch+=" && git -C $REMOTE_SRC checkout --quiet --force FETCH_HEAD"
else
  tarball="${TMPDIR:-/tmp}/electra-pipeline-src.tar.gz"
  note "shipping the committed HEAD of $REPO_DIR (uncommitted changes are not included)"
  run git -C "$REPO_DIR" archive --format=tar.gz --output="$tarball" HEAD
  run "${GCLOUD_TPU[@]}" scp "$tarball" "$TPU_NAME:electra-src.tar.gz" --project="$PROJECT" --zone="$ZONE" --worker=0
  fetch="rm -rf $REMOTE_SRC && mkdir -p $REMOTE_SRC && tar -xzf \$HOME/electra-src.tar.gz -C $REMOTE_SRC"
fi
note "install path: $(install_path) (RUNTIME_VERSION=$RUNTIME_VERSION; docs/tpu_software.md)"
venv="$(tpu_venv_command "$REMOTE_VENV")"
install="$(tpu_install_command "$REMOTE_VENV" "$REMOTE_SRC")"
verify="${CLIENT_ENV}$REMOTE_VENV/bin/electra-doctor --versions-only --tpu local"
on_tpu "$fetch && $venv && $install && $verify"
note "next: scripts/doctor.sh"
