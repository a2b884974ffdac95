"""cloudops.supervisor with a stand-in trainer: exit codes 0/2/1/75, a silent hang, a supervisor
killed and started again (a reboot), systemd's stop, scripts/stop.sh's stop; the pure restart rules."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from cloudops import restarts, supervisor
from cloudops.restarts import Attempt

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
HOST = socket.gethostname()
# The stand-in: attempt n does plan[n-1] ("CODE@STEP" or "hang@STEP"), after logging the trainer's progress line.
STAND_IN = r'''
import pathlib, subprocess, sys, time
count = pathlib.Path("attempts")
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
plan = sys.argv[1].split(",")
what, step = plan[min(n, len(plan)) - 1].split("@")
print(f"I1206 07:00:00.1 1 trainer.py:410] step {step}/100 (epoch 0.01): loss 9.0 gen 9.0 disc 0.6 gen_acc 0.000 "
      f"disc_auc 0.500 lr 1.00e-04 {n * 100}.5 ex/s", flush=True)
if what == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pathlib.Path(f"child-{n}").write_text(str(child.pid))
    time.sleep(600)
if what == "2":
    print("error: hparam 'vocab_size' = 32200 but vocab.txt has 30000 tokens", flush=True)
if what == "1":
    print("RuntimeError: TPU device lost after 1234 s", flush=True)
sys.exit(int(what))
'''


def cli(*args, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudops.supervisor", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout, **kw)


@pytest.fixture()
def job(tmp_path):
    """prepare a run of the stand-in with `plan`; returns (state_dir, log_dir, workdir)."""
    work, state, logs = tmp_path / "work", tmp_path / "state", tmp_path / "bucket" / "logs"
    work.mkdir()
    (work / "trainer.py").write_text(STAND_IN)

    def make(plan: str, *extra: str, log_dir: str | None = None, env: dict | None = None):
        proc = subprocess.run(
            [sys.executable, "-m", "cloudops.supervisor", "prepare", "--state-dir", str(state), "--log-dir",
             log_dir or str(logs), "--sync-seconds", "0.2", "--poll-seconds", "0.05", "--restart-delay", "0",
             "--grace-seconds", "2", *extra, "--", sys.executable, "trainer.py", plan],
            capture_output=True, text=True, env=env or ENV, cwd=work, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(state / "electra-train.service")
        return state, logs, work
    return make


def state_of(state_dir) -> dict:
    return json.loads((state_dir / "state.json").read_text())


def codes(state_dir) -> list:
    return [a[1] for a in state_of(state_dir)["attempts"]]


def alive(pid: int) -> bool:
    return supervisor.start_time(pid) is not None and pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def wait_for(cond, seconds=30):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- the rules ------------------------------------------------------------------------------------
def A(n, code, sig="x", step=10):
    return Attempt(n, code, sig, step)


@pytest.mark.parametrize("attempts,action,delay", [
    ([], "restart", 0),
    ([A(1, 0)], "finished", 0),
    ([A(1, 2)], "user-error", 0),
    ([A(1, 75)], "restart", 30),
    ([A(1, None)], "restart", 0),  # a reboot: at once
    ([A(1, 1), A(2, 1)], "restart", 60),  # the same failure again: twice the pause
    ([A(1, 1), A(2, 1), A(3, 1)], "gave-up", 0),
    ([A(1, 1, step=10), A(2, 1, step=20), A(3, 1, step=30)], "restart", 30),  # each got further: not stuck
    ([A(1, 1, "a"), A(2, 1, "b"), A(3, 1, "a")], "restart", 30),  # different failures
    ([A(1, 75), A(2, 75), A(3, 75)], "gave-up", 0),  # a hang at the same step every time
    ([A(1, -9), A(2, 1), A(3, 1)], "restart", 60),
])
def test_decide(attempts, action, delay):
    d = restarts.decide(attempts, max_identical=3, base_delay=30)
    assert (d.action, d.delay) == (action, delay)


def test_restart_delay_and_signature():
    assert [restarts.restart_delay(n, 30) for n in (1, 2, 3, 6, 9)] == [30, 60, 120, 600, 600]
    assert restarts.signature("  watchdog: no progress for 1802 s at step 4000 ") == "watchdog: no progress for # s at step #"
    line = "I1206 trainer.py:410] step 2400/800000 (epoch 0.03): loss 9.1 gen 8 disc 0.5 gen_acc 0.1 disc_auc 0.6 lr 1.00e-04 1536.2 ex/s"
    assert restarts.parse_progress(line) == restarts.Progress(2400, 800000, 1536.2)
    assert restarts.parse_progress("step 5 of something") is None


def test_steps_per_second_and_time_to_go():
    assert restarts.steps_per_second([(100.0, 1000)]) is None
    assert restarts.steps_per_second([(100.0, 1000), (160.0, 1000)]) is None  # no progress
    assert restarts.steps_per_second([(100.0, 1000), (130.0, 1020), (200.0, 1100)]) == 1.0
    beat = {"name": "train", "state": "running", "attempt": 1, "step": 764000, "num_train_steps": 800000,
            "steps_per_second": 2.5, "updated": 1000.0, "host": "h", "sync_seconds": 60}
    assert restarts.heartbeat_line(beat, now=1010.0) == (
        "train: running (attempt 1), step 764000/800000 (95.5%), about 4.0 h to go, heartbeat 10 s ago from h")


def test_heartbeat_line():
    beat = {"name": "train", "state": "running", "attempt": 2, "step": 2000, "num_train_steps": 800000,
            "examples_per_second": 1536.25, "updated": 1000.0, "host": "t1-w-0", "sync_seconds": 60}
    assert restarts.heartbeat_line(beat, now=1042.0) == (
        "train: running (attempt 2), step 2000/800000 (0.2%), 1536.2 examples/s, heartbeat 42 s ago from t1-w-0")
    assert restarts.heartbeat_line(beat, now=1000.0 + 3600).endswith(
        "heartbeat 3600 s ago from t1-w-0, STALE: the VM or its supervisor is not running (scripts/status.sh shows "
        "the TPU's state)")


# --- the supervisor with the stand-in ---------------------------------------------------------------
def test_crash_and_hang_watchdog_resume_then_finish_and_run_the_on_success_command(job):
    state, logs, work = job("1@10,75@20,0@100", "--on-success", "echo exported > exported.txt")
    run = cli("run", "--state-dir", str(state))
    assert run.returncode == 0, run.stderr
    assert codes(state) == [1, 75, 0]
    assert state_of(state)["final"] == {"action": "finished", "reason": "the trainer finished (exit status 0)"}
    assert (work / "exported.txt").read_text() == "exported\n"
    beat = json.loads((logs / "train-heartbeat.json").read_text())
    assert (beat["state"], beat["step"], beat["num_train_steps"], beat["examples_per_second"], beat["attempt"]) == (
        "finished", 100, 100, 300.5, 3)
    assert beat["reason"] == "the trainer finished (exit status 0); on-success command exit status 0"
    shipped = (logs / f"train-{HOST}.log").read_text()
    assert "exit status 1; resuming from the last checkpoint; attempt 2 in 0 s" in shipped
    assert "hang watchdog (exit status 75); resuming from the last checkpoint; attempt 3 in 0 s" in shipped
    assert not (state / "trainer.pid").exists()
    # systemd starting it again (a reboot after the end) starts nothing
    again = cli("run", "--state-dir", str(state))
    assert again.returncode == 0 and codes(state) == [1, 75, 0] and (work / "attempts").read_text() == "3"
    shown = cli("status", str(logs / "train-heartbeat.json"), "--lines", "1")
    assert shown.stdout.splitlines()[0].startswith(
        "train: finished (attempt 3), step 100/100 (100.0%), 300.5 examples/s, heartbeat ")
    assert shown.stdout.splitlines()[1].endswith("on-success command ended with exit status 0")


def test_a_user_error_stops_for_good(job):
    state, logs, work = job("2@0")
    assert cli("run", "--state-dir", str(state)).returncode == 0
    assert codes(state) == [2]
    final = state_of(state)["final"]
    assert final == {"action": "user-error", "reason": (
        "the trainer refused to run (exit status 2): error: hparam 'vocab_size' = # but vocab.txt has # tokens; "
        "fix it, then scripts/train.sh")}


def test_the_same_failure_three_times_gives_up(job):
    state, logs, work = job("1@10")
    assert cli("run", "--state-dir", str(state)).returncode == 0
    assert codes(state) == [1, 1, 1]
    assert state_of(state)["final"]["action"] == "gave-up"
    assert json.loads((logs / "train-heartbeat.json").read_text())["reason"] == (
        "3 attempts in a row ended the same way (exit status 1: RuntimeError: TPU device lost after # s) without a "
        "new step; see the log")


def test_a_silent_hang_is_killed_with_its_whole_process_group(job):
    state, logs, work = job("hang@10,0@20", "--stall-seconds", "1")
    assert cli("run", "--state-dir", str(state)).returncode == 0
    assert codes(state) == [-signal.SIGTERM, 0]
    assert not alive(int((work / "child-1").read_text()))  # the trainer's child went down with it
    assert "no output for 1 s: killed the trainer's process group" in (state / "train.log").read_text()


def test_supervisor_killed_then_started_again_takes_down_the_orphan_and_resumes(job):
    """A supervisor that dies (kill -9; after a reboot nothing is left at all) is started again by systemd:
    it finds its state, stops the trainer group it left, counts that attempt as interrupted and resumes."""
    state, logs, work = job("hang@10,0@20")
    first = subprocess.Popen([sys.executable, "-m", "cloudops.supervisor", "run", "--state-dir", str(state)], env=ENV)
    wait_for(lambda: (work / "child-1").exists())
    leader = int((state / "trainer.pid").read_text().split()[0])
    assert os.getpgid(leader) == leader  # the pidfile holds the group leader: the trainer itself, no wrapper
    assert (state / "trainer.pid").read_text() == f"{leader} {supervisor.start_time(leader)}\n"
    first.kill()
    first.wait()
    assert alive(leader)
    second = cli("run", "--state-dir", str(state))
    assert second.returncode == 0, second.stderr
    assert not alive(leader) and not alive(int((work / "child-1").read_text()))
    assert codes(state) == [None, 0] and state_of(state)["final"]["action"] == "finished"
    assert f"trainer process group {leader} left from before: stopping it" in (state / "train.log").read_text()


def test_a_stale_pidfile_does_not_match_a_reused_pid(tmp_path):
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        pidfile = tmp_path / "trainer.pid"
        pidfile.write_text(f"{other.pid} {supervisor.start_time(other.pid) - 1}\n")  # same PID, another process
        assert supervisor.live_leader(str(pidfile)) is None
        supervisor.write_pidfile(str(pidfile), other.pid)
        assert supervisor.live_leader(str(pidfile)) == other.pid
        pidfile.write_text("999999999 5\n")
        assert supervisor.live_leader(str(pidfile)) is None
    finally:
        other.kill()
        other.wait()


def test_systemd_stop_or_reboot_resumes_at_the_next_start(job):
    state, logs, work = job("hang@10,0@20")
    proc = subprocess.Popen([sys.executable, "-m", "cloudops.supervisor", "run", "--state-dir", str(state)], env=ENV)
    wait_for(lambda: (work / "child-1").exists())
    leader = int((state / "trainer.pid").read_text().split()[0])
    proc.send_signal(signal.SIGTERM)  # what systemd sends at shutdown (KillMode=mixed)
    assert proc.wait(timeout=30) == 0
    assert not alive(leader) and not alive(int((work / "child-1").read_text()))
    assert codes(state) == [None] and state_of(state)["final"] is None
    assert json.loads((logs / "train-heartbeat.json").read_text())["state"] == "interrupted"
    assert cli("run", "--state-dir", str(state)).returncode == 0
    assert codes(state) == [None, 0] and state_of(state)["final"]["action"] == "finished"


def test_stop_takes_the_group_down_and_nothing_restarts_until_the_next_prepare(job):
    state, logs, work = job("hang@10,0@20")
    proc = subprocess.Popen([sys.executable, "-m", "cloudops.supervisor", "run", "--state-dir", str(state)], env=ENV)
    wait_for(lambda: (work / "child-1").exists())
    leader = int((state / "trainer.pid").read_text().split()[0])
    stopped = cli("stop", "--state-dir", str(state))
    assert stopped.stdout == (f"stopped the trainer (process group {leader}); the supervisor will not start one "
                              "again\n")
    assert proc.wait(timeout=30) == 0
    assert not alive(int((work / "child-1").read_text()))
    assert state_of(state)["final"] == {"action": "stopped", "reason": "stopped by scripts/stop.sh"}
    assert json.loads((logs / "train-heartbeat.json").read_text())["state"] == "stopped"
    assert cli("run", "--state-dir", str(state)).returncode == 0 and (work / "attempts").read_text() == "1"
    assert cli("stop", "--state-dir", str(state)).stdout.startswith("no trainer running")
    # scripts/stop.sh: `stop`, then systemd's SIGTERM at once: still recorded as stopped, not interrupted
    job("hang@10")
    proc = subprocess.Popen([sys.executable, "-m", "cloudops.supervisor", "run", "--state-dir", str(state)], env=ENV)
    wait_for(lambda: (work / "child-2").exists())
    stopper = subprocess.Popen([sys.executable, "-m", "cloudops.supervisor", "stop", "--state-dir", str(state)],
                               env=ENV, stdout=subprocess.DEVNULL)
    wait_for(lambda: (state / "stop").exists())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0 and stopper.wait(timeout=30) == 0
    assert state_of(state)["final"]["action"] == "stopped"
    assert json.loads((logs / "train-heartbeat.json").read_text())["state"] == "stopped"
    job("0@20")  # scripts/train.sh: a new run
    assert cli("run", "--state-dir", str(state)).returncode == 0 and codes(state) == [0]


def test_the_unit_and_the_job(job):
    state, logs, work = job("0@1", "--env", "TPU_NAME=tpu-1", "--env", "TPU_LOAD_LIBRARY=0")
    unit = (state / "electra-train.service").read_text()
    assert f"ExecStart={sys.executable} -m cloudops.supervisor run --state-dir {state}\n" in unit
    assert f"WorkingDirectory={work}\n" in unit and "KillMode=mixed\n" in unit and "Restart=on-failure\n" in unit
    assert "WantedBy=multi-user.target" in unit and "StartLimitBurst=5\n" in unit
    spec = json.loads((state / "job.json").read_text())
    assert spec["env"] == {"TPU_NAME": "tpu-1", "TPU_LOAD_LIBRARY": "0"} and spec["argv"][-2:] == ["trainer.py", "0@1"]
    bad = cli("prepare", "--state-dir", str(state), "--log-dir", str(logs))
    assert (bad.returncode, bad.stderr) == (2, "error: supervisor prepare: no command after --\n")
    missing = cli("status", str(logs / "nothing.json"))
    assert missing.stderr == (f"error: no heartbeat at {logs / 'nothing.json'}: no run was started under the "
                              "supervisor there (scripts/train.sh starts one)\n")


def test_log_and_heartbeat_reach_the_bucket(job, emulator_host, store, bucket):
    """On the VM LOG_DIR is gs://BUCKET/RUN/logs; the laptop's status reads it from there (here: the emulator)."""
    env = {**ENV, "STORAGE_EMULATOR_HOST": emulator_host}
    state, _, work = job("1@10,0@50", log_dir=f"gs://{bucket}/run/logs", env=env)
    assert subprocess.run([sys.executable, "-m", "cloudops.supervisor", "run", "--state-dir", str(state)], env=env,
                          timeout=60).returncode == 0
    shown = subprocess.run([sys.executable, "-m", "cloudops.supervisor", "status",
                            f"gs://{bucket}/run/logs/train-heartbeat.json", "--lines", "2"],
                           capture_output=True, text=True, env=env, timeout=60)
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("train: finished (attempt 2), step 50/100 (50.0%), 200.5 examples/s, heartbeat ")
    assert f"from {HOST}" in lines[0]
    assert lines[2].endswith("finished: the trainer finished (exit status 0)")


def test_the_heartbeat_goes_on_during_the_pause_before_a_restart(job):
    state, logs, work = job("1@10,0@20")
    spec = json.loads((state / "job.json").read_text())
    (state / "job.json").write_text(json.dumps({**spec, "restart_delay": 3.0}))
    proc = subprocess.Popen([sys.executable, "-m", "cloudops.supervisor", "run", "--state-dir", str(state)], env=ENV)
    beat = logs / "train-heartbeat.json"
    wait_for(lambda: beat.exists() and json.loads(beat.read_text())["state"] == "restarting")
    first = json.loads(beat.read_text())["updated"]
    wait_for(lambda: json.loads(beat.read_text())["updated"] > first + 0.5)  # a new beat, still in the pause
    assert json.loads(beat.read_text())["state"] == "restarting"
    assert (work / "attempts").read_text() == "1"
    assert proc.wait(timeout=30) == 0 and codes(state) == [1, 0]
