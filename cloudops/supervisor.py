"""Keeps one training run going on a TPU VM for days, with no one watching.

systemd starts `python -m cloudops.supervisor run --state-dir D` (scripts/train.sh installs the
unit, `prepare` writes it), again after a reboot, and again if the supervisor itself dies. It
starts the trainer in a process group of its own, and after each exit asks
`cloudops.restarts.decide` whether to resume or stop for good. Every `sync_seconds` it copies
the log to LOG_DIR/NAME-HOST.log and writes LOG_DIR/NAME-heartbeat.json (step, examples/s,
state), so a laptop sees the run with no ssh (`status`), even after the VM is gone.

Why systemd and not the TPU VM's startup script: the unit is installed by the same ssh step
that starts a run (a startup script is set when the TPU is created, so changing it means
recreating the TPU), it runs as the user who owns ~/electra, restarts a dead supervisor
(Restart=on-failure) and, with KillMode=mixed, lets the supervisor take the trainer's group
down on a stop before systemd kills what is left.

Files in D (on the VM's disk, so a reboot finds them):
  job.json        what to run: argv, env, log dir, on-success command, timings (`prepare`)
  state.json      the attempts so far, the one running, the final decision
  trainer.pid     "PID START": the trainer's process-group leader and its start time
                  (/proc/PID/stat field 22), so a PID reused after a reboot never matches
  stop            `stop` was asked: nothing starts again until the next `prepare`
  train.log       the trainer's output and the supervisor's own `supervisor:` lines
  heartbeat.json  the latest heartbeat (also in LOG_DIR)
"""
from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Sequence

from cloudops import restarts
from cloudops.restarts import Attempt
from foundation import console, fileio
from foundation.errors import UserError, run_cli

RATE_WINDOW = 10  # progress observations (about one a minute) the time-to-go estimate averages over
DEFAULTS = {"sync_seconds": 60.0, "poll_seconds": 1.0, "restart_delay": 30.0, "stall_seconds": 0.0,
            "max_identical": 3, "grace_seconds": 30.0}


# --- processes --------------------------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])  # fields after "(comm)" start at field 3


def write_pidfile(path: str, pid: int) -> None:
    fileio.write_text(path, f"{pid} {start_time(pid)}\n")


def live_leader(path: str) -> int | None:
    """The PID in the pidfile if that very process still runs and leads its group; else None."""
    try:
        pid, started = (int(w) for w in open(path).read().split())
    except (OSError, ValueError):
        return None
    try:
        leads = os.getpgid(pid) == pid
    except ProcessLookupError:
        return None
    return pid if leads and start_time(pid) == started else None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace_seconds: float, child: subprocess.Popen | None = None) -> None:
    """SIGTERM to the whole group, SIGKILL to what is left after `grace_seconds`."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()  # reap the leader, or its zombie keeps the group alive
            if not group_alive(pgid):
                return
            time.sleep(0.05)


# --- files ------------------------------------------------------------------------------------
def _read_json(path: str, default: Any) -> Any:
    return json.loads(fileio.read_text(path)) if fileio.exists(path) else default


def _write_json(path: str, value: Any) -> None:
    fileio.write_text(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


def unit_text(*, name: str, user: str, workdir: str, python: str, state_dir: str) -> str:
    """The systemd unit that runs the supervisor at boot and after it dies."""
    venv_bin = os.path.dirname(python)
    return f"""[Unit]
Description=ELECTRA {name} run under cloudops.supervisor (restarts, logs and heartbeat in gs://)
Wants=network-online.target
After=network-online.target
# a supervisor that keeps crashing (5 times in an hour) is left down: its heartbeat goes stale
StartLimitIntervalSec=3600
StartLimitBurst=5

[Service]
User={user}
WorkingDirectory={workdir}
Environment=PATH={venv_bin}:/usr/local/bin:/usr/bin:/bin:/snap/bin
ExecStart={python} -m cloudops.supervisor run --state-dir {state_dir}
KillMode=mixed
TimeoutStopSec=90
Restart=on-failure
RestartSec=30

[Install]
WantedBy=multi-user.target
"""


def prepare(state_dir: str, *, name: str, log_dir: str, argv: Sequence[str], env: dict[str, str],
            on_success: str, settings: dict[str, float]) -> str:
    """A new run: job.json, a clean state (a fresh count of failures, no stop), the unit file; its path."""
    if not argv:
        raise UserError("supervisor prepare: no command after --")
    os.makedirs(state_dir, exist_ok=True)
    job = {"name": name, "argv": list(argv), "env": env, "cwd": os.getcwd(), "log_dir": log_dir,
           "on_success": on_success, **DEFAULTS, **settings}
    _write_json(os.path.join(state_dir, "job.json"), job)
    _write_json(os.path.join(state_dir, "state.json"), {"attempts": [], "running": None, "final": None})
    if os.path.exists(os.path.join(state_dir, "stop")):
        os.remove(os.path.join(state_dir, "stop"))
    unit = os.path.join(state_dir, f"electra-{name}.service")
    fileio.write_text(unit, unit_text(name=name, user=getpass.getuser(), workdir=os.getcwd(),
                                      python=sys.executable, state_dir=os.path.abspath(state_dir)))
    return unit


# --- the supervisor ---------------------------------------------------------------------------
class Supervisor:
    def __init__(self, state_dir: str):
        self.dir = state_dir
        job_path = os.path.join(state_dir, "job.json")
        if not os.path.exists(job_path):
            raise UserError(f"{job_path} not found: start runs with scripts/train.sh (supervisor prepare)")
        self.job = json.loads(fileio.read_text(job_path))
        self.host = socket.gethostname()
        self.log = os.path.join(state_dir, f"{self.job['name']}.log")
        self.pidfile = os.path.join(state_dir, "trainer.pid")
        self.stop_file = os.path.join(state_dir, "stop")
        self.remote_log = fileio.join(self.job["log_dir"], f"{self.job['name']}-{self.host}.log")
        self.remote_beat = fileio.join(self.job["log_dir"], f"{self.job['name']}-heartbeat.json")
        self.terminating = False
        self.progress: restarts.Progress | None = None
        self.seen: list[tuple[float, int]] = []  # (time, step) of this attempt's progress, for the rate
        self._read_upto = 0
        self._ship_failed = False
        self.state = _read_json(os.path.join(state_dir, "state.json"),
                                {"attempts": [], "running": None, "final": None})

    # state
    def attempts(self) -> list[Attempt]:
        return [Attempt(*a) for a in self.state["attempts"]]

    def save(self) -> None:
        _write_json(os.path.join(self.dir, "state.json"), self.state)

    def say(self, text: str) -> None:
        with open(self.log, "a") as fh:
            fh.write(f"supervisor {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {text}\n")

    # progress, log and heartbeat
    def scan_log(self) -> None:
        """Read the log's new lines for the trainer's progress line."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._read_upto)
                chunk = fh.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._read_upto += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            self.progress = restarts.parse_progress(line) or self.progress
        if self.progress is not None and (not self.seen or self.seen[-1][1] != self.progress.step):
            self.seen = [*self.seen, (time.time(), self.progress.step)][-RATE_WINDOW:]

    def beat(self, state: str, reason: str = "", pid: int | None = None) -> None:
        """Ship the log, then the heartbeat (so its log is at least as new); a failure is logged once."""
        self.scan_log()
        p = self.progress
        beat = {"name": self.job["name"], "host": self.host, "state": state, "reason": reason,
                "attempt": len(self.state["attempts"]) + (self.state["running"] is not None), "pid": pid,
                "step": p.step if p else None, "num_train_steps": p.num_train_steps if p else None,
                "examples_per_second": p.examples_per_second if p else None,
                "steps_per_second": restarts.steps_per_second(self.seen), "updated": time.time(),
                "sync_seconds": self.job["sync_seconds"], "log": self.remote_log}
        _write_json(os.path.join(self.dir, "heartbeat.json"), {**beat, "log": self.log})
        try:
            with open(self.log, "rb") as src, fileio.atomic_write(self.remote_log, "wb") as dst:
                dst.write(src.read())
            _write_json(self.remote_beat, beat)
            self._ship_failed = False
        except Exception as exc:  # the bucket being away for a while must never stop the supervision
            if not self._ship_failed:
                self.say(f"could not write to {self.job['log_dir']} (retried every sync): {exc}")
            self._ship_failed = True

    # one attempt
    def attempt(self, number: int) -> Attempt:
        job = self.job
        self.say(f"attempt {number}: {' '.join(job['argv'])}")
        start = os.path.getsize(self.log)
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(job["argv"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=job["cwd"], env={**os.environ, **job["env"]}, start_new_session=True)
        write_pidfile(self.pidfile, proc.pid)
        self.seen = []  # a restart's compile and input start-up are not the run's rate
        self.state["running"] = number
        self.save()
        self.beat("running", pid=proc.pid)
        last_sync = last_growth = time.monotonic()
        size, stalled = start, ""
        while proc.poll() is None:
            now = time.monotonic()
            if self.terminating or os.path.exists(self.stop_file):
                kill_group(proc.pid, job["grace_seconds"], proc)
                break
            if os.path.getsize(self.log) != size:
                size, last_growth = os.path.getsize(self.log), now
            elif job["stall_seconds"] and now - last_growth > job["stall_seconds"]:
                stalled = f"no output for {job['stall_seconds']:.0f} s: killed the trainer's process group"
                self.say(stalled)
                kill_group(proc.pid, job["grace_seconds"], proc)
                break
            if now - last_sync >= job["sync_seconds"]:
                self.beat("running", pid=proc.pid)
                last_sync = now
            time.sleep(job["poll_seconds"])
        code = proc.wait()
        if group_alive(proc.pid):  # the leader ended but left children in its group
            kill_group(proc.pid, job["grace_seconds"])
        os.remove(self.pidfile)
        with open(self.log, "rb") as fh:
            fh.seek(start)
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        self.scan_log()
        interrupted = self.terminating or os.path.exists(self.stop_file)
        return Attempt(number, None if interrupted else code, restarts.signature(stalled or (lines[-1] if lines else "")),
                       self.progress.step if self.progress else None)

    def _wait(self, seconds: float, state: str, reason: str) -> None:
        """Wait before a restart, still beating (a pause of minutes must not look like a dead VM)."""
        now = time.monotonic()
        deadline, last_sync = now + seconds, now
        self.beat(state, reason)
        while time.monotonic() < deadline and not self.terminating and not os.path.exists(self.stop_file):
            time.sleep(min(self.job["poll_seconds"], max(0.0, deadline - time.monotonic())))
            if time.monotonic() - last_sync >= self.job["sync_seconds"]:
                self.beat(state, reason)
                last_sync = time.monotonic()

    def finish(self, action: str, reason: str) -> int:
        self.state["final"] = {"action": action, "reason": reason}
        self.save()
        self.say(f"{action}: {reason}")
        self.beat(action, reason)
        if action == "finished" and self.job["on_success"]:
            self.say(f"on success: {self.job['on_success']}")
            self.beat(action, f"{reason}; running the on-success command")
            with open(self.log, "ab") as out:
                code = subprocess.run(["bash", "-c", self.job["on_success"]], stdout=out, stderr=subprocess.STDOUT,
                                      cwd=self.job["cwd"], env={**os.environ, **self.job["env"]}).returncode
            self.say(f"on-success command ended with exit status {code}")
            self.beat(action, f"{reason}; on-success command exit status {code}")
        return 0

    def run(self) -> int:
        """Supervise until a final decision; exit 0 then (systemd restarts only a supervisor that crashed)."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "terminating", True))
        self.scan_log()
        final = self.state["final"]
        if final:
            self.say(f"not started: the run already ended ({final['action']}); scripts/train.sh starts a new one")
            return 0
        orphan = live_leader(self.pidfile)
        if orphan is not None:  # the supervisor died and left its trainer: take it down before starting another
            self.say(f"trainer process group {orphan} left from before: stopping it")
            kill_group(orphan, self.job["grace_seconds"])
        if self.state["running"] is not None:
            p = self.progress
            self.state["attempts"].append(list(Attempt(self.state["running"], None, "", p.step if p else None)))
            self.state["running"] = None
            self.save()
        while True:
            if os.path.exists(self.stop_file):
                return self.finish("stopped", "stopped by scripts/stop.sh")
            d = restarts.decide(self.attempts(), max_identical=int(self.job["max_identical"]),
                                base_delay=self.job["restart_delay"])
            if d.action in restarts.FINAL_ACTIONS:
                return self.finish(d.action, d.reason)
            number = len(self.state["attempts"]) + 1
            self.say(f"{d.reason}; attempt {number} in {d.delay:.0f} s")
            self._wait(d.delay, "restarting" if number > 1 else "starting", d.reason)
            if os.path.exists(self.stop_file):
                continue
            if self.terminating:
                return 0
            ended = self.attempt(number)
            self.state["attempts"].append(list(ended))
            self.state["running"] = None
            self.save()
            self.say(f"attempt {number} ended: exit status {ended.exit_code}")
            if os.path.exists(self.stop_file):
                continue  # `stop` asked (systemd's SIGTERM may follow it): recorded at the top
            if self.terminating:  # systemd stops us (shutdown, reboot): resume at the next start
                self.beat("interrupted", "the VM is shutting down or systemd stopped the supervisor")
                return 0


# --- the laptop's and scripts' side -----------------------------------------------------------
def stop(state_dir: str, grace_seconds: float = DEFAULTS["grace_seconds"]) -> str:
    """Ask the supervisor to stop for good and take the trainer's whole process group down."""
    os.makedirs(state_dir, exist_ok=True)
    fileio.write_text(os.path.join(state_dir, "stop"), f"{time.time()}\n")
    pid = live_leader(os.path.join(state_dir, "trainer.pid"))
    if pid is None:
        return "no trainer running; the supervisor will not start one again"
    kill_group(pid, grace_seconds)
    return f"stopped the trainer (process group {pid}); the supervisor will not start one again"


def status(heartbeat: str, lines: int) -> str:
    if not fileio.exists(heartbeat):
        raise UserError(f"no heartbeat at {heartbeat}: no run was started under the supervisor there "
                        "(scripts/train.sh starts one)")
    beat = json.loads(fileio.read_text(heartbeat))
    out = [restarts.heartbeat_line(beat)]
    if lines and beat.get("log") and fileio.exists(beat["log"]):
        out += fileio.read_text(beat["log"]).splitlines()[-lines:]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = console.parser(prog="python -m cloudops.supervisor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write job.json and the systemd unit for a new run: prepare ... -- CMD")
    prep.add_argument("--state-dir", required=True)
    prep.add_argument("--name", default="train")
    prep.add_argument("--log-dir", required=True, help="gs:// folder (or local) for the log copy and heartbeat")
    prep.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="for the trainer")
    prep.add_argument("--on-success", default="", help="shell command run after the trainer exits 0")
    for key, value in DEFAULTS.items():
        prep.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    sub.add_parser("run", help="supervise (what systemd runs)").add_argument("--state-dir", required=True)
    sub.add_parser("stop", help="stop the run for good").add_argument("--state-dir", required=True)
    st = sub.add_parser("status", help="one line from a heartbeat (gs:// or local), and the log's tail")
    st.add_argument("heartbeat")
    st.add_argument("--lines", type=int, default=0)
    args = parser.parse_args(own)
    if args.command == "prepare":
        env = dict(e.split("=", 1) for e in args.env)
        settings = {k: getattr(args, k) for k in DEFAULTS}
        print(prepare(args.state_dir, name=args.name, log_dir=args.log_dir, argv=command, env=env,
                      on_success=args.on_success, settings=settings))
    elif command:
        raise UserError(f"supervisor {args.command} takes no command after --")
    elif args.command == "run":
        return Supervisor(args.state_dir).run()
    elif args.command == "stop":
        print(stop(args.state_dir))
    else:
        print(status(args.heartbeat, args.lines))
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
