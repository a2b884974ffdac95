#!/usr/bin/env bash
# Runs ON the TPU VM (train.sh and build_data.sh call it over ssh): start a long command
# in the background under nohup, so it survives the ssh session, at most once at a time.
#
#   remote_job.sh NAME LOG_DIR -- COMMAND...     start (or report that it already runs)
#   remote_job.sh --status NAME                  running or finished, and the log's tail
#
# (build_data.sh uses it; training runs under cloudops.supervisor instead, see train.sh.)
# The log is ~/electra-logs/NAME.log; it is copied to LOG_DIR/NAME-<host>.log (a gs://
# folder, through cloudops.storage, or a local one) every LOG_SYNC_SECONDS (default 60)
# and when the command ends, so it outlives the VM. Its last line is "exit status N".
set -euo pipefail

LOGS="$HOME/electra-logs"
SYNC_SECONDS="${LOG_SYNC_SECONDS:-60}"

die() {
  echo "error: $*" >&2
  exit 2
}

# start_time PID: the process's start (clock ticks since boot, /proc/PID/stat field 22).
start_time() {
  local stat fields
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  read -r -a fields <<<"$stat"
  echo "${fields[19]}"
}

# wait_for_pidfile PID NAME: return once the job has written its pidfile (it leads its own process
# group by then: setsid runs before its bash starts) or has already ended.
wait_for_pidfile() {
  local tries=0
  while ((tries++ < 200)) && [[ ! -f "$LOGS/$2.pid" ]] && [[ -e "/proc/$1" ]]; do sleep 0.05; done
}

# running_pid NAME: the job's PID if the pidfile's process (PID and start time: a PID reused after
# a reboot does not match) still runs.
running_pid() {
  local pidfile="$LOGS/$1.pid" pid started
  [[ -f "$pidfile" ]] || return 1
  read -r pid started <"$pidfile" || return 1
  [[ -n "$pid" && "$(start_time "$pid")" == "$started" ]] && echo "$pid"
}

copy_log() {
  local log="$1" dest="$2"
  case "$dest" in
    gs://*) python -m cloudops.storage upload "$log" "$dest" >/dev/null 2>&1 || true ;;
    *) mkdir -p "$dest" && cp "$log" "$dest/" ;;
  esac
}

# The job itself, in the background process: run, keep the bucket copy fresh, record the status.
inner() {
  local name="$1" dest="$2"
  shift 2
  local log="$LOGS/$name.log" shipped status=0
  shipped="$LOGS/ship/$name-$(hostname).log"
  mkdir -p "$LOGS/ship"
  # the job writes its own pidfile (PID and start time) and removes it when it ends: written by the
  # launcher, a job faster than the launcher would leave it behind
  echo "$$ $(start_time $$)" >"$LOGS/$name.pid"
  echo "started $(date -u +%FT%TZ): $*" >>"$log"
  (while sleep "$SYNC_SECONDS"; do cp "$log" "$shipped" && copy_log "$shipped" "$dest"; done) &
  local syncer=$!
  "$@" >>"$log" 2>&1 || status=$?
  kill "$syncer" 2>/dev/null || true
  echo "exit status $status" >>"$log"
  cp "$log" "$shipped" && copy_log "$shipped" "$dest"
  rm -f "$LOGS/$name.pid"
  return "$status"
}

main() {
  mkdir -p "$LOGS"
  case "${1:-}" in
    --inner)
      shift
      inner "$@"
      ;;
    --status)
      (($# == 2)) || die "usage: remote_job.sh --status NAME"
      local pid
      if pid="$(running_pid "$2")"; then echo "$2: running (pid $pid)"; else echo "$2: not running"; fi
      [[ -f "$LOGS/$2.log" ]] && tail -n "${LINES_SHOWN:-40}" "$LOGS/$2.log"
      return 0
      ;;
    *)
      if (($# < 4)) || [[ "$3" != -- ]]; then die "usage: remote_job.sh NAME LOG_DIR -- COMMAND..."; fi
      local name="$1" dest="$2" pid
      shift 3
      if pid="$(running_pid "$name")"; then
        echo "$name is already running (pid $pid); not started again. Log: $LOGS/$name.log"
        return 0
      fi
      rm -f "$LOGS/$name.pid"  # a stale one (its PID reused or gone): the job writes its own
      # its own process group (setsid), so `kill -- -PID` stops the whole job
      nohup setsid bash "$0" --inner "$name" "$dest" "$@" >/dev/null 2>&1 &
      pid=$!
      wait_for_pidfile "$pid" "$name"
      echo "started $name (pid $pid, its process group); log: $LOGS/$name.log, copied to $dest/$name-$(hostname).log"
      ;;
  esac
}

main "$@"
