# shellcheck shell=bash disable=SC2034  # the variables set here are used by the scripts that source it
# Shared by every scripts/*.sh (sourced, not run): flags, the tpu.env config, --dry-run,
# and the gcloud commands that address the TPU VM.
#
# Every script takes:  --config FILE (default: $TPU_ENV or ./tpu.env)  --dry-run  -h|--help
# With --dry-run a script prints each command it would run, one per line on stdout, exactly
# as it would run it (bash-quoted), and runs nothing; a check whose answer decides what runs
# next is printed with a trailing "# check" comment and its dry-run answer.

SCRIPTS_DIR="$(cd "${BASH_SOURCE[0]%/*}" && pwd)"
REPO_DIR="${SCRIPTS_DIR%/*}"
CONFIG_FILE="${TPU_ENV:-tpu.env}"
DRY_RUN=0
ASSUME_YES=0
ARGS=()

# Keys a tpu.env may set; anything else is a typo and an error.
# RUN_KEYS: the supervised run's keys, checked by load_run_options (end of this file).
RUN_KEYS=(QUEUE_WAIT HPARAMS_OVERRIDE ON_FINISH)
REQUIRED_KEYS=(PROJECT ZONE TPU_NAME ACCELERATOR_TYPE RUNTIME_VERSION BUCKET RUN_NAME)
OPTIONAL_KEYS=(CAPACITY MODEL_NAME HPARAMS MAX_SEQ_LENGTH SOURCE SOURCE_REF TPU_TENSORFLOW TPU_WHEELS "${RUN_KEYS[@]}")

# Paths on the TPU VM (in the ssh user's home), as they appear in remote commands.
# shellcheck disable=SC2016  # expanded by the remote shell, not here
REMOTE_SRC='$HOME/electra'
# shellcheck disable=SC2016
REMOTE_VENV='$HOME/electra-venv'

die() {
  echo "error: $*" >&2
  exit 2
}

note() {
  echo "$*" >&2
}

# parse_args "$@": the common flags; everything else is left in ARGS for the script.
parse_args() {
  while (($#)); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --yes | -y) ASSUME_YES=1 ;;
      --config)
        (($# >= 2)) || die "--config needs a file"
        CONFIG_FILE="$2"
        shift
        ;;
      --config=*) CONFIG_FILE="${1#--config=}" ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) ARGS+=("$1") ;;
    esac
    shift
  done
}

# load_config: read KEY=VALUE lines from $CONFIG_FILE (no code is executed), check them,
# and derive DATA_DIR, REGION and, on a pod slice, CLIENT_ENV.
load_config() {
  [[ -f "$CONFIG_FILE" ]] || die "config file $CONFIG_FILE not found: copy scripts/tpu.env.example to tpu.env and fill it in (or pass --config FILE)"
  local line key value n=0
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]] && continue
    [[ "$line" =~ ^[[:space:]]*([A-Z_][A-Z0-9_]*)=(.*)$ ]] || die "$CONFIG_FILE:$n: expected KEY=VALUE, got: $line"
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    value="${value%"${value##*[![:space:]]}"}"
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
      value="${BASH_REMATCH[1]}"
    fi
    case " ${REQUIRED_KEYS[*]} ${OPTIONAL_KEYS[*]} " in
      *" $key "*) printf -v "$key" '%s' "$value" ;;
      *) die "$CONFIG_FILE:$n: unknown key $key (known: ${REQUIRED_KEYS[*]} ${OPTIONAL_KEYS[*]})" ;;
    esac
  done <"$CONFIG_FILE"

  for key in "${REQUIRED_KEYS[@]}"; do
    [[ -n "${!key:-}" ]] || die "$CONFIG_FILE: $key is not set (see scripts/tpu.env.example)"
  done
  CAPACITY="${CAPACITY:-on-demand}"
  MODEL_NAME="${MODEL_NAME:-electra-small}"
  HPARAMS="${HPARAMS:-configs/small.json}"
  SOURCE_REF="${SOURCE_REF:-main}"
  SOURCE="${SOURCE:-}"
  TPU_TENSORFLOW="${TPU_TENSORFLOW:-$(example_value TPU_TENSORFLOW)}"
  TPU_WHEELS="${TPU_WHEELS:-}"

  [[ "$ZONE" =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] || die "$CONFIG_FILE: ZONE=$ZONE is not a zone like europe-west4-a"
  [[ "$ACCELERATOR_TYPE" =~ ^v[0-9]+[a-z]*-([0-9]+)$ ]] || die "$CONFIG_FILE: ACCELERATOR_TYPE=$ACCELERATOR_TYPE is not like v3-8 or v3-32"
  [[ "$BUCKET" =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$ ]] || die "$CONFIG_FILE: BUCKET=$BUCKET is not a bucket name (no gs://, no slashes)"
  [[ "$RUN_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "$CONFIG_FILE: RUN_NAME=$RUN_NAME may only hold letters, digits, . _ -"
  [[ "$MODEL_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "$CONFIG_FILE: MODEL_NAME=$MODEL_NAME may only hold letters, digits, . _ -"
  [[ "$TPU_TENSORFLOW" =~ ^tensorflow-tpu==[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$CONFIG_FILE: TPU_TENSORFLOW=$TPU_TENSORFLOW is not like tensorflow-tpu==2.19.1 (one TPU build of TensorFlow, an exact version)"
  case "$CAPACITY" in
    on-demand | spot | reserved | preemptible) ;;
    *) die "$CONFIG_FILE: CAPACITY=$CAPACITY must be on-demand, spot, reserved or preemptible" ;;
  esac
  CLIENT_ENV=""
  if is_pod; then CLIENT_ENV="TPU_NAME=$(printf %q "$TPU_NAME") TPU_LOAD_LIBRARY=0 "; fi
  DATA_DIR="gs://$BUCKET/$RUN_NAME"
  REGION="${ZONE%-*}"
  load_run_options
  # a dry run of a copied, not yet edited example says whose project and bucket it shows
  local examples=()
  if ((DRY_RUN)); then
    for key in PROJECT BUCKET; do [[ "${!key}" != "$(example_value "$key")" ]] || examples+=("$key=${!key}"); done
  fi
  if ((${#examples[@]})); then
    note "dry run with the example's ${examples[*]} (from $CONFIG_FILE): set your own before running it for real"
  fi
}

# check_pod_config: for the scripts that create or use the TPU (not delete/follow/upload):
# a multi-host slice runs the way Google's Cloud TPU documentation runs TensorFlow on one: a
# tpu-vm-tf-X.Y.Z-pod image runs the TPU runtime (TensorFlow X.Y.Z) on every host, and ONE
# client on worker 0 (TPU_NAME=the TPU's name, TPU_LOAD_LIBRARY=0), the image's own TensorFlow
# (install path "image", so client and runtime are the same build), reaches all of them through
# TPUClusterResolver(tpu=TPU_NAME). Only v2/v3 slices (8 cores per host, the name counts cores)
# are accepted.
check_pod_config() {
  is_pod || return 0
  [[ "$ACCELERATOR_TYPE" =~ ^v[23]-[0-9]+$ ]] ||
    die "$CONFIG_FILE: ACCELERATOR_TYPE=$ACCELERATOR_TYPE: multi-host slices are supported for TPU v2 and v3 only (their cores per host and per slice are documented and checked); use a v2/v3 slice or a single host"
  [[ "$RUNTIME_VERSION" =~ ^tpu-vm-tf-[0-9]+\.[0-9]+\.[0-9]+-pod(-[a-z0-9-]+)?$ ]] ||
    die "$CONFIG_FILE: ACCELERATOR_TYPE=$ACCELERATOR_TYPE is a multi-host slice, which TensorFlow drives from one client on worker 0 through the TPU runtime that a tpu-vm-tf-X.Y.Z-pod image runs on every host, but RUNTIME_VERSION=$RUNTIME_VERSION is not such an image: set it to tpu-vm-tf-2.18.0-pod-se (docs/tpu_software.md)"
}

# client_hparams: the hparams layer train.sh and doctor.sh add on a pod slice: the TPU's name
# for TPUClusterResolver and the slice's cores (v2/v3: the number in the type), single-quoted
# for the remote shell.
client_hparams() {
  local json
  json="{\"tpu_name\": \"$TPU_NAME\", \"num_tpu_cores\": ${ACCELERATOR_TYPE##*-}, \"tpu_zone\": \"$ZONE\", \"gcp_project\": \"$PROJECT\"}"
  echo "'${json//\'/\'\\\'\'}'"
}

# example_value KEY: KEY's default, as scripts/tpu.env.example sets it.
example_value() {
  sed -n "s/^$1=//p" "$SCRIPTS_DIR/tpu.env.example"
}

# install_path: how the VM gets its TensorFlow, decided by RUNTIME_VERSION alone (docs/tpu_software.md):
# "image" on one of Google's TensorFlow images (tpu-vm-tf-X.Y.Z-...), whose TensorFlow and libtpu
# are used as they are; "pip" on a base image, which gets TPU_TENSORFLOW from the package index.
install_path() {
  if [[ "$RUNTIME_VERSION" =~ ^tpu-vm-tf-[0-9]+\.[0-9]+\.[0-9]+- ]]; then echo image; else echo pip; fi
}

# tpu_venv_command VENV: the command that creates VENV (python3-venv from apt if the image lacks it).
# On the image path it sees the system Python's packages (--system-site-packages): there the image
# installed TensorFlow and libtpu. Rerunning it on an existing VENV keeps what is installed.
tpu_venv_command() {
  local flags=""
  [[ "$(install_path)" == pip ]] || flags="--system-site-packages "
  echo "(python3 -m venv $flags$1 || (sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv" \
    "&& python3 -m venv $flags$1))"
}

# tpu_install_command VENV SRC: the pip commands that put the package from SRC into VENV with
# exactly one TensorFlow, then tensorflow-text of that minor version without its dependencies
# (they name the CPU `tensorflow`, which would shadow or overwrite the TPU build). On a pod slice
# (worker 0; only on a -pod image, see check_pod_config) also the `pod` extra: the libraries
# TPUClusterResolver(tpu=NAME) resolves the slice's name with.
#  image: the image's TensorFlow and libtpu as they are; the project is installed under
#    constraints that pin every package of the system Python to the image's version, so pip
#    replaces or shadows nothing of the image (a conflict stops the install, naming the package).
#  pip:   the `tpu` extra and $TPU_TENSORFLOW (setup.py pins the same build and its libtpu; pip
#    refuses a mismatch). `make test-tpu-env` runs this command here.
tpu_install_command() {
  local pip="$1/bin/pip" src="$2" extras="" minor wheels=""
  if [[ "$(install_path)" == image ]]; then
    [[ "$RUNTIME_VERSION" =~ ^tpu-vm-tf-([0-9]+\.[0-9]+)\. ]] && minor="${BASH_REMATCH[1]}"
    if is_pod; then extras="[pod]"; fi
    echo "$pip install -q --upgrade pip" \
      "&& python3 -m pip list --format=freeze --exclude-editable >\$HOME/electra-image-packages.txt" \
      "&& $pip install -q -c \$HOME/electra-image-packages.txt -e \"$src$extras\"" \
      "&& $pip install -q --no-deps $(printf %q "tensorflow-text==$minor.*")"
    return
  fi
  minor="${TPU_TENSORFLOW#*==}"
  [[ -z "$TPU_WHEELS" ]] || wheels=" -f $(printf %q "$TPU_WHEELS")"
  echo "$pip install -q --upgrade pip && $pip install -q -e \"${src}[tpu]\" $TPU_TENSORFLOW$wheels" \
    "&& $pip install -q --no-deps $(printf %q "tensorflow-text==${minor%.*}.*")"
}

# smoke_command: the doctor's smoke test as a remote command (docs/tpu_software.md): the installed
# versions, then the TPU's cores, a bfloat16 matmul and an all-reduce across all of them, in
# seconds; on a pod slice from worker 0 through the TPU's name. Run it before a long job.
smoke_command() {
  local tpu=local
  if is_pod; then tpu="$TPU_NAME"; fi
  echo "${CLIENT_ENV}$REMOTE_VENV/bin/electra-doctor --smoke --tpu $(printf %q "$tpu") --accelerator-type $ACCELERATOR_TYPE"
}

# is_pod: true for a multi-host slice (more than one host's 8 cores/chips, e.g. v3-32).
is_pod() {
  ((${ACCELERATOR_TYPE##*-} > 8))
}

require_gcloud() {
  ((DRY_RUN)) && return 0
  command -v gcloud >/dev/null 2>&1 || die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), then run: gcloud auth login"
}

# quote_cmd ARGS...: the command as one line that bash reads back as the same words;
# an argument with spaces or shell characters is single-quoted (after `--flag=`), so a
# remote --command stays readable.
quote_cmd() {
  local out=() arg flag
  for arg in "$@"; do
    flag=""
    if [[ ! "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      [[ "$arg" =~ ^(--[a-z-]+=)(.*)$ ]] && flag="${BASH_REMATCH[1]}" arg="${BASH_REMATCH[2]}"
      arg="'${arg//\'/\'\\\'\'}'"
    fi
    out+=("$flag$arg")
  done
  echo "${out[*]}"
}

# run CMD...: print it (dry run) or announce it on stderr and run it.
run() {
  if ((DRY_RUN)); then
    quote_cmd "$@"
    return 0
  fi
  note "+ $(quote_cmd "$@")"
  "$@"
}

# check yes|no CMD...: run a read-only query quietly; its exit status is the answer.
# A dry run prints it and answers the given yes/no, so the rest of the plan is shown.
check() {
  local assume="$1"
  shift
  if ((DRY_RUN)); then
    echo "$(quote_cmd "$@")  # check (dry run: $assume)"
    [[ "$assume" == yes ]]
    return
  fi
  "$@" >/dev/null 2>&1
}

GCLOUD_TPU=(gcloud compute tpus tpu-vm)

tpu_exists() {
  check "$1" "${GCLOUD_TPU[@]}" describe "$TPU_NAME" --project="$PROJECT" --zone="$ZONE"
}

# on_tpu 'remote shell command': run it over ssh on worker 0, the only host the scripts use:
# on a pod slice the other hosts only run the image's TPU runtime.
on_tpu() {
  run "${GCLOUD_TPU[@]}" ssh "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" --worker=0 --command="$1"
}

# remote_job_command NAME 'command': the remote command that starts it in the background
# on the VM (once, with CLIENT_ENV on a pod slice), its log copied to $DATA_DIR/logs/; see
# scripts/remote_job.sh.
remote_job_command() {
  echo "cd $REMOTE_SRC && ${CLIENT_ENV}PATH=$REMOTE_VENV/bin:\$PATH bash scripts/remote_job.sh $1 $DATA_DIR/logs -- $2"
}

# local_python: the local interpreter that has this package (the repo's venv if present).
local_python() {
  if [[ -x "$REPO_DIR/.venv/bin/python" ]]; then
    echo "$REPO_DIR/.venv/bin/python"
  else
    echo python3
  fi
}

# ==== The supervised run (issue 25): queued TPUs, the TPU's state, the run under systemd =======
# Kept apart from the install functions above.

# Where the supervised run lives on the VM (cloudops.supervisor's state dir) and its systemd unit.
# shellcheck disable=SC2016
REMOTE_STATE='$HOME/electra-logs/train'
UNIT=electra-train
STALL_SECONDS=10800 # no output at all for 3 h: the supervisor kills and restarts (the watchdog misses a first-call hang)
GCLOUD_QR=(gcloud compute tpus queued-resources)

# load_run_options: defaults and checks of RUN_KEYS (load_config calls it last).
load_run_options() {
  QUEUE_WAIT="${QUEUE_WAIT:-6h}"
  HPARAMS_OVERRIDE="${HPARAMS_OVERRIDE:-}"
  ON_FINISH="${ON_FINISH:-keep}"
  [[ "$QUEUE_WAIT" =~ ^[1-9][0-9]*[mhd]$ ]] || die "$CONFIG_FILE: QUEUE_WAIT=$QUEUE_WAIT is not a duration like 90m, 6h or 2d"
  case "$ON_FINISH" in
    keep | export | export-delete) ;;
    *) die "$CONFIG_FILE: ON_FINISH=$ON_FINISH must be keep, export or export-delete" ;;
  esac
  [[ -z "$HPARAMS_OVERRIDE" || "$HPARAMS_OVERRIDE" =~ ^\{.*\}$ || "$HPARAMS_OVERRIDE" =~ ^gs://[^[:space:]]+\.json$ ]] ||
    die "$CONFIG_FILE: HPARAMS_OVERRIDE must be a JSON object on one line ({\"learning_rate\": 1e-4}) or a gs://.../FILE.json"
}

# duration_seconds 6h: QUEUE_WAIT in seconds.
duration_seconds() {
  local n="${1%?}"
  case "${1: -1}" in
    m) echo $((n * 60)) ;;
    h) echo $((n * 3600)) ;;
    d) echo $((n * 86400)) ;;
  esac
}

# run_hparams: the trainer's --hparams after HPARAMS: the pod slice's layer, then HPARAMS_OVERRIDE
# (last, so it wins), each quoted for the remote shell.
run_hparams() {
  local layers="--hparams $HPARAMS"
  if is_pod; then layers+=" --hparams $(client_hparams)"; fi
  if [[ -n "$HPARAMS_OVERRIDE" ]]; then layers+=" --hparams '${HPARAMS_OVERRIDE//\'/\'\\\'\'}'"; fi
  echo "$layers"
}

# query VAR ANSWER CMD...: run a read-only gcloud query and put its output in VAR (empty when it
# fails: the thing does not exist). A dry run prints it with "# query" and its dry-run ANSWER.
query() {
  local var="$1" assume="$2" answer=""
  shift 2
  if ((DRY_RUN)); then
    echo "$(quote_cmd "$@")  # query (dry run: ${assume:-none})"
    printf -v "$var" '%s' "$assume"
    return 0
  fi
  answer="$("$@" 2>/dev/null)" || answer=""
  printf -v "$var" '%s' "$answer"
}

# tpu_state ANSWER: TPU_STATE and TPU_TYPE of the TPU VM (both empty: there is none).
tpu_state() {
  local info
  query info "$1" "${GCLOUD_TPU[@]}" describe "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
    --format='value(state,acceleratorType)'
  read -r TPU_STATE TPU_TYPE <<<"$info" || true
  TPU_TYPE="${TPU_TYPE##*/}"
}

# queued_state ANSWER: QR_STATE of the queued resource named TPU_NAME (empty: there is none).
queued_state() {
  query QR_STATE "$1" "${GCLOUD_QR[@]}" describe "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
    --format='value(state.state)'
}

# delete_tpu_now: delete the TPU (through its queued resource, if it has one); no question asked.
delete_tpu_now() {
  if [[ -n "$QR_STATE" ]]; then
    run "${GCLOUD_QR[@]}" delete "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" --force --quiet
  else
    run "${GCLOUD_TPU[@]}" delete "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" --quiet
  fi
}

# gcloud_or_die CMD...: run a gcloud command that changes something; its failure becomes one line,
# and a zone without capacity is named as such.
gcloud_or_die() {
  if ((DRY_RUN)); then
    quote_cmd "$@"
    return 0
  fi
  note "+ $(quote_cmd "$@")"
  local err rc=0
  { err="$("$@" 2>&1 1>&3 3>&-)"; } 3>&1 || rc=$?
  ((rc == 0)) && return 0
  err="$(tr -s '\n\t ' ' ' <<<"$err")"
  err="${err#"${err%%[![:space:]]*}"}"
  err="${err%"${err##*[![:space:]]}"}"
  if [[ "$err" =~ [Cc]apacity|RESOURCE_EXHAUSTED|[Ss]tockout ]]; then
    die "no $ACCELERATOR_TYPE capacity in $ZONE for CAPACITY=$CAPACITY right now (${err:0:240}); queued resources wait for it: use CAPACITY=spot or on-demand, another zone that offers $ACCELERATOR_TYPE, or retry later"
  fi
  die "${err:0:400}${err:+ }(exit status $rc from: $(quote_cmd "$@"))"
}

# on_finish_command: what the supervisor runs after the trainer exits 0 (ON_FINISH): export to
# gs://.../export/MODEL_NAME on the VM, then (export-delete) delete this TPU, which stops its billing.
on_finish_command() {
  [[ "$ON_FINISH" == keep ]] && return 0
  local dir="\$HOME/electra-export/$MODEL_NAME" where="--project=$PROJECT --zone=$ZONE"
  local cmd="electra-export --model-dir $DATA_DIR/models/$MODEL_NAME --output-dir $dir --overwrite"
  cmd+=" && python -m cloudops.storage upload $dir $DATA_DIR/export/$MODEL_NAME"
  if [[ "$ON_FINISH" == export-delete ]]; then
    cmd+=" && (gcloud compute tpus queued-resources delete $TPU_NAME $where --force --quiet --async"
    cmd+=" || gcloud compute tpus tpu-vm delete $TPU_NAME $where --quiet --async)"
  fi
  echo "$cmd"
}

# heartbeat_uri: where the supervisor on the VM writes the run's heartbeat.
heartbeat_uri() {
  echo "$DATA_DIR/logs/train-heartbeat.json"
}

# local_tool NAME: a console script of this package here (beside local_python, else on PATH).
local_tool() {
  local python
  python="$(local_python)"
  if [[ "$python" == */* ]]; then echo "${python%/*}/$1"; else echo "$1"; fi
}

# records_length: the max_seq_length the records are built with, read from the hparams (HPARAMS,
# then an inline HPARAMS_OVERRIDE): the one source of truth, which the trainer checks the records
# against. MAX_SEQ_LENGTH, the key that used to say it a second time, may stay only if it agrees.
records_length() {
  local length
  length="$("$(local_python)" - "$REPO_DIR/$HPARAMS" "$HPARAMS_OVERRIDE" <<'PY'
import json, sys
length = None
for layer in sys.argv[1:]:
    if layer and not layer.startswith("gs://"):
        try:
            text = layer if layer.lstrip().startswith("{") else open(layer, encoding="utf-8").read()
            length = json.loads(text).get("max_seq_length", length)
        except (OSError, ValueError) as exc:
            sys.exit(f"error: hparams {layer}: {exc}")
print(length or "")
PY
  )" || exit 2
  [[ -n "$length" ]] || die "$CONFIG_FILE: HPARAMS=$HPARAMS sets no max_seq_length: set it there or in HPARAMS_OVERRIDE (the records are built with it)"
  [[ -z "${MAX_SEQ_LENGTH:-}" || "$MAX_SEQ_LENGTH" == "$length" ]] ||
    die "$CONFIG_FILE: MAX_SEQ_LENGTH=$MAX_SEQ_LENGTH but the hparams say max_seq_length $length: remove MAX_SEQ_LENGTH (the records' length is the hparams'), or set max_seq_length in HPARAMS_OVERRIDE"
  echo "$length"
}
