"""scripts/*.sh: shellcheck-clean, exact commands in --dry-run, config errors, reruns, confirmation.

GCP is not reachable here, so the commands are checked as printed by --dry-run; the
branches that depend on gcloud's answers (skip an existing TPU VM, confirm a deletion) run
against a stand-in `gcloud` on PATH that records its arguments. remote_job.sh, which runs
on the VM, runs for real.
"""
import json
import os
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")
SCRIPTS = ROOT / "scripts"
STEPS = ["create_bucket", "upload", "create_tpu", "setup_tpu", "doctor", "build_data", "train", "follow",
         "export", "delete_tpu", "status", "stop", "recreate_tpu", "smoke"]
TPU = ["gcloud", "compute", "tpus", "tpu-vm"]
QR = ["gcloud", "compute", "tpus", "queued-resources"]
WHERE = ["--project=proj-1", "--zone=europe-west4-a"]
DESCRIBE = [*TPU, "describe", "tpu-1", *WHERE, "--format=value(state,acceleratorType)"]
QR_DESCRIBE = [*QR, "describe", "tpu-1", *WHERE, "--format=value(state.state)"]
QR_CREATE = [*QR, "create", "tpu-1", *WHERE, "--node-id=tpu-1", "--accelerator-type=v3-8",
             "--runtime-version=tpu-vm-tf-2.18.0-pjrt", "--valid-until-duration=6h"]


@pytest.fixture(scope="session")
def shellcheck() -> str:
    """shellcheck from Debian, installed on first use (the tests run as root in CI)."""
    found = shutil.which("shellcheck")
    if found is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "shellcheck"], check=True, capture_output=True)
        found = shutil.which("shellcheck")
    assert found, "shellcheck could not be installed"
    return found


def write_env(path: pathlib.Path, **values: str) -> pathlib.Path:
    """The example config with some values replaced (an empty string empties the key)."""
    base = {"PROJECT": "proj-1", "ZONE": "europe-west4-a", "TPU_NAME": "tpu-1", "BUCKET": "bkt-1",
            "RUN_NAME": "run-1", "SOURCE": ""}
    base.update(values)
    lines = []
    for line in (SCRIPTS / "tpu.env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={base.pop(key)}" if "=" in line and key in base else line)
    lines += [f"{k}={v}" for k, v in base.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def env_file(tmp_path) -> pathlib.Path:
    return write_env(tmp_path / "tpu.env")


def run_script(name: str, *args: str, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(SCRIPTS / f"{name}.sh"), *args], capture_output=True, text=True,
                          input=stdin, env=env, timeout=60)


def dry_run(name: str, env_file: pathlib.Path, *args: str) -> list[list[str]]:
    """The commands a dry run prints, each split back into its words (check comments dropped)."""
    proc = run_script(name, "--config", str(env_file), "--dry-run", *args)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line, comments=True) for line in proc.stdout.splitlines()]


def remote(command: list[str]) -> list[str]:
    """The words of an ssh command's --command string, as the VM's shell will see them."""
    (flag,) = [a for a in command if a.startswith("--command=")]
    return shlex.split(flag[len("--command="):])


def test_shellcheck_clean_and_strict_mode(shellcheck):
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert {p.stem for p in scripts} == set(STEPS) | {"lib", "remote_job"}
    proc = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout
    for script in scripts:
        if script.stem != "lib":
            assert "set -euo pipefail" in script.read_text(), script


@pytest.mark.parametrize("name", STEPS)
def test_help(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: scripts/{name}.sh")


def test_create_bucket_in_the_zone_region(env_file):
    assert dry_run("create_bucket", env_file) == [
        ["gcloud", "storage", "buckets", "describe", "gs://bkt-1", "--project=proj-1"],
        ["gcloud", "storage", "buckets", "create", "gs://bkt-1", "--project=proj-1", "--location=europe-west4",
         "--uniform-bucket-level-access"],
    ]


def test_create_tpu_through_a_queued_resource(env_file, tmp_path):
    assert dry_run("create_tpu", env_file) == [
        ["gcloud", "services", "enable", "tpu.googleapis.com", "--project=proj-1"],
        DESCRIBE, QR_DESCRIBE, QR_CREATE, QR_DESCRIBE]
    spot = write_env(tmp_path / "spot.env", CAPACITY="spot", QUEUE_WAIT="2d", **POD)
    assert dry_run("create_tpu", spot)[3][-4:] == [
        "--accelerator-type=v3-32", "--runtime-version=tpu-vm-tf-2.18.0-pod-se", "--spot", "--valid-until-duration=2d"]
    reserved = write_env(tmp_path / "reserved.env", CAPACITY="reserved")
    assert dry_run("create_tpu", reserved)[3] == [*QR_CREATE[:-1], "--reserved", "--valid-until-duration=6h"]
    preemptible = write_env(tmp_path / "pre.env", CAPACITY="preemptible")  # no queued form
    assert dry_run("create_tpu", preemptible)[2:] == [
        [*TPU, "create", "tpu-1", *WHERE, "--accelerator-type=v3-8", "--version=tpu-vm-tf-2.18.0-pjrt", "--preemptible"]]
    for key, value, message in (("QUEUE_WAIT", "6 hours", "QUEUE_WAIT=6 hours is not a duration like 90m, 6h or 2d"),
                                ("ON_FINISH", "delete", "ON_FINISH=delete must be keep, export or export-delete"),
                                ("CAPACITY", "cheap", "CAPACITY=cheap must be on-demand, spot, reserved or preemptible")):
        bad = write_env(tmp_path / "bad.env", **{key: value})
        proc = run_script("create_tpu", "--config", str(bad), "--dry-run")
        assert (proc.returncode, proc.stderr) == (2, f"error: {bad}: {message}\n")


VENV = "$HOME/electra-venv"
PIP = f"{VENV}/bin/pip"
BASE_IMAGE = {"RUNTIME_VERSION": "tpu-ubuntu2204-base"}


def test_setup_on_the_tensorflow_image_keeps_its_tensorflow(env_file):
    """The default path (RUNTIME_VERSION=tpu-vm-tf-2.18.0-pjrt): a venv that sees the image's TensorFlow and
    libtpu, the project installed under constraints that pin every package of the image, tensorflow-text
    2.18 without its dependencies; no TensorFlow, libtpu or Keras named anywhere."""
    archive, scp, ssh = dry_run("setup_tpu", env_file)
    tarball = archive[-2].split("=", 1)[1]
    assert archive == ["git", "-C", str(ROOT), "archive", "--format=tar.gz", f"--output={tarball}", "HEAD"]
    assert scp == [*TPU, "scp", tarball, "tpu-1:electra-src.tar.gz", *WHERE, "--worker=0"]
    assert ssh[:6] == [*TPU, "ssh", "tpu-1"] and "--worker=0" in ssh
    text = ssh[-1][len("--command="):]
    assert " && (python3 -m venv --system-site-packages $HOME/electra-venv || (sudo apt-get update -qq && sudo " \
           "apt-get install -y -qq python3-venv && python3 -m venv --system-site-packages $HOME/electra-venv)) && " in text
    words = remote(ssh)
    start = words.index("--upgrade") - 3
    assert words[start:] == [
        PIP, "install", "-q", "--upgrade", "pip",
        "&&", "python3", "-m", "pip", "list", "--format=freeze", "--exclude-editable",
        ">$HOME/electra-image-packages.txt",
        "&&", PIP, "install", "-q", "-c", "$HOME/electra-image-packages.txt", "-e", "$HOME/electra",
        "&&", PIP, "install", "-q", "--no-deps", "tensorflow-text==2.18.*",
        # then the versions are checked against each other before anything else runs
        "&&", f"{VENV}/bin/electra-doctor", "--versions-only", "--tpu", "local"]
    assert tensorflow_builds(words) == [] and not [w for w in words if w.startswith(("libtpu", "keras"))]


def test_setup_on_a_base_image_installs_the_tpu_extra(tmp_path):
    (*_, ssh) = dry_run("setup_tpu", write_env(tmp_path / "base.env", **BASE_IMAGE))
    assert " && (python3 -m venv $HOME/electra-venv || (sudo apt-get" in ssh[-1]
    words = remote(ssh)
    start = words.index("--upgrade") - 3
    assert words[start:] == [
        PIP, "install", "-q", "--upgrade", "pip",
        "&&", PIP, "install", "-q", "-e", "$HOME/electra[tpu]", "tensorflow-tpu==2.19.1",
        "&&", PIP, "install", "-q", "--no-deps", "tensorflow-text==2.19.*",
        "&&", f"{VENV}/bin/electra-doctor", "--versions-only", "--tpu", "local"]


def tensorflow_builds(words: list[str]) -> list[str]:
    """The TensorFlow requirements among pip's words: the builds that would be installed."""
    return [w for w in words if re.fullmatch(r"(tensorflow|tensorflow-cpu|tensorflow-tpu|tf-nightly\S*)"
                                             r"(\[[\w,-]+\])?([=<>~!].*)?", w)]


def test_setup_installs_exactly_one_tensorflow_the_one_make_test_tpu_env_tested(tmp_path):
    """On a base image the printed install names one TensorFlow build: the example's TPU_TENSORFLOW, which is
    what `make test-tpu-env` installs with the same lib.sh command, and what setup.py's `tpu` extra pins;
    tensorflow-text comes without its dependencies (they are the CPU build)."""
    *_, ssh = dry_run("setup_tpu", write_env(tmp_path / "base.env", **BASE_IMAGE))
    words = remote(ssh)
    example = re.search(r"^TPU_TENSORFLOW=(.*)$", (SCRIPTS / "tpu.env.example").read_text(), re.M).group(1)
    assert example == "tensorflow-tpu==2.19.1"
    assert tensorflow_builds(words) == [example]
    assert f'"{example}"' in (ROOT / "setup.py").read_text()  # the `tpu` extra pins the same build
    assert "$(TPU_TENSORFLOW)" in (ROOT / "Makefile").read_text().split("test-tpu-env:")[0]
    text = words.index("tensorflow-text==2.19.*")
    assert words[text - 1] == "--no-deps"


def test_setup_from_git(tmp_path):
    cfg = write_env(tmp_path / "git.env", SOURCE="https://github.com/example/electra.git", SOURCE_REF="v1.0",
                    TPU_TENSORFLOW="", **BASE_IMAGE)
    (ssh,) = dry_run("setup_tpu", cfg)
    text = ssh[-1]
    assert "git clone --quiet https://github.com/example/electra.git $HOME/electra" in text
    assert "git -C $HOME/electra fetch --quiet origin v1.0 && git -C $HOME/electra checkout --quiet --force FETCH_HEAD" in text
    assert tensorflow_builds(remote(ssh)) == ["tensorflow-tpu==2.19.1"]  # empty = the example's default
    two = write_env(tmp_path / "two.env", TPU_TENSORFLOW="tensorflow==2.21.0")
    proc = run_script("setup_tpu", "--config", str(two), "--dry-run")
    assert proc.returncode == 2 and proc.stderr == (
        f"error: {two}: TPU_TENSORFLOW=tensorflow==2.21.0 is not like tensorflow-tpu==2.19.1 "
        "(one TPU build of TensorFlow, an exact version)\n")


POD = {"ACCELERATOR_TYPE": "v3-32", "RUNTIME_VERSION": "tpu-vm-tf-2.18.0-pod-se"}
# the hparams layer train.sh and doctor.sh add on a pod slice, as the VM's shell passes it on
POD_LAYER = '{"tpu_name": "tpu-1", "num_tpu_cores": 32, "tpu_zone": "europe-west4-a", "gcp_project": "proj-1"}'
CLIENT_ENV = ["TPU_NAME=tpu-1", "TPU_LOAD_LIBRARY=0"]


def test_pod_slice_is_driven_by_one_client_on_worker_0(tmp_path):
    """v3-32 the way Google's TensorFlow pod documentation runs it: only worker 0 gets the package and runs
    the program, with TPU_NAME and TPU_LOAD_LIBRARY=0; training gets the TPU's name and the slice's 32
    cores; the other hosts run the -pod image's TPU runtime and nothing of ours."""
    cfg = write_env(tmp_path / "pod.env", **POD)
    archive, scp, setup = dry_run("setup_tpu", cfg)
    assert scp[-1] == "--worker=0" and setup[:9] == [*TPU, "ssh", "tpu-1", *WHERE, "--worker=0"]
    # worker 0 gets the libraries that resolve the slice by its name (setup.py's `pod` extra)
    assert [PIP, "install", "-q", "-c", "$HOME/electra-image-packages.txt", "-e", "$HOME/electra[pod]"] == \
        remote(setup)[remote(setup).index("-c") - 3:][:7]
    assert remote(setup)[-7:] == ["&&", *CLIENT_ENV, "$HOME/electra-venv/bin/electra-doctor", "--versions-only",
                                  "--tpu", "local"]
    (train,) = dry_run("train", cfg)
    assert train[:9] == [*TPU, "ssh", "tpu-1", *WHERE, "--worker=0"] and len(train) == 10
    words = remote(train)
    assert words[words.index("--stall-seconds"):words.index("--") + 1] == [
        "--stall-seconds", "10800", "--env", "TPU_NAME=tpu-1", "--env", "TPU_LOAD_LIBRARY=0", "--"]
    assert words[words.index("--") + 1:words.index("--") + 13] == [
        "python", "run_pretraining.py", "--data-dir", "gs://bkt-1/run-1",
        "--vocab-file", "gs://bkt-1/run-1/vocab/vocab.txt", "--model-name", "electra-small",
        "--hparams", "configs/small.json", "--hparams", POD_LAYER]
    assert json.loads(POD_LAYER) == {"tpu_name": "tpu-1", "num_tpu_cores": 32, "tpu_zone": "europe-west4-a",
                                     "gcp_project": "proj-1"}
    (doctor,) = dry_run("doctor", cfg)
    assert remote(doctor) == [
        "cd", "$HOME/electra", "&&", *CLIENT_ENV, "$HOME/electra-venv/bin/electra-doctor", "--data-dir",
        "gs://bkt-1/run-1", "--model-name", "electra-small", "--zone", "europe-west4-a", "--accelerator-type", "v3-32",
        "--hparams", "configs/small.json", "--hparams", POD_LAYER, "--tpu", "tpu-1"]
    (build,) = dry_run("build_data", cfg)
    assert "--worker=0" in build and remote(build)[3:5] == CLIENT_ENV
    for script in STEPS:  # no script addresses every host
        proc = run_script(script, "--config", str(cfg), "--dry-run", *(["--yes"] if script == "delete_tpu" else []))
        assert proc.returncode == 0 or script == "upload", (script, proc.stderr)
        assert "--worker=all" not in proc.stdout


SMOKE_CASES = pytest.mark.parametrize("values, words", [
    ({}, ["$HOME/electra-venv/bin/electra-doctor", "--smoke", "--tpu", "local", "--accelerator-type", "v3-8"]),
    (POD, [*CLIENT_ENV, "$HOME/electra-venv/bin/electra-doctor", "--smoke", "--tpu", "tpu-1", "--accelerator-type",
           "v3-32"]),
])


@SMOKE_CASES
def test_smoke_command_for_a_host_and_a_slice(values, words, tmp_path):
    """What train.sh runs first on the VM: the doctor's smoke test, on a slice from worker 0 by the TPU's name."""
    cfg = write_env(tmp_path / "smoke.env", **values)
    proc = subprocess.run([BASH, "-c", 'source "$0" && CONFIG_FILE="$1" && load_config && smoke_command',
                           str(SCRIPTS / "lib.sh"), str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert shlex.split(proc.stdout) == words


@SMOKE_CASES
def test_train_runs_the_smoke_test_before_the_trainer(values, words, tmp_path):
    """train.sh on worker 0 (a v3-32 on the -pod-se image: by the TPU's name): when the service is not running,
    the smoke test first, and only if it passes the supervisor's job and the service; a running service's busy
    TPU is never tested."""
    (train,) = dry_run("train", write_env(tmp_path / "t.env", **values))
    assert train[:9] == [*TPU, "ssh", "tpu-1", *WHERE, "--worker=0"]
    command = remote(train)
    running, start = command[:command.index("else")], command[command.index("else") + 1:]
    assert start[:len(words) + 5] == [*words, "&&", "$HOME/electra-venv/bin/python", "-m", "cloudops.supervisor",
                                      "prepare"]
    assert "--smoke" not in running and start.count("--smoke") == 1


def test_single_host_commands_are_unchanged(env_file):
    """v3-8: the presets' tpu_name "local", no client environment, no hparams layer."""
    (train,) = dry_run("train", env_file)
    words = remote(train)
    assert words[words.index("--stall-seconds") + 2] == "--"
    assert words[words.index("--") + 1:words.index("&&", words.index("--"))] == [
        "python", "run_pretraining.py", "--data-dir", "gs://bkt-1/run-1", "--vocab-file",
        "gs://bkt-1/run-1/vocab/vocab.txt", "--model-name", "electra-small", "--hparams", "configs/small.json"]
    (doctor,) = dry_run("doctor", env_file)
    assert remote(doctor)[3] == "$HOME/electra-venv/bin/electra-doctor" and remote(doctor)[-2:] == ["--tpu", "local"]


@pytest.mark.parametrize("values,message", [
    ({"RUNTIME_VERSION": "tpu-ubuntu2204-base"},
     "ACCELERATOR_TYPE=v3-32 is a multi-host slice, which TensorFlow drives from one client on worker 0 through the "
     "TPU runtime that a tpu-vm-tf-X.Y.Z-pod image runs on every host, but RUNTIME_VERSION=tpu-ubuntu2204-base is not "
     "such an image: set it to tpu-vm-tf-2.18.0-pod-se (docs/tpu_software.md)"),
    ({"RUNTIME_VERSION": "tpu-vm-tf-2.18.0-pjrt"},  # the single-host image
     "ACCELERATOR_TYPE=v3-32 is a multi-host slice, which TensorFlow drives from one client on worker 0 through the "
     "TPU runtime that a tpu-vm-tf-X.Y.Z-pod image runs on every host, but RUNTIME_VERSION=tpu-vm-tf-2.18.0-pjrt is not "
     "such an image: set it to tpu-vm-tf-2.18.0-pod-se (docs/tpu_software.md)"),
    ({"ACCELERATOR_TYPE": "v4-32"},
     "ACCELERATOR_TYPE=v4-32: multi-host slices are supported for TPU v2 and v3 only (their cores per host and per "
     "slice are documented and checked); use a v2/v3 slice or a single host"),
])
@pytest.mark.parametrize("script", ["create_tpu", "setup_tpu", "doctor", "train", "build_data", "recreate_tpu"])
def test_pod_slice_configs_that_cannot_work_are_refused(script, values, message, tmp_path):
    cfg = write_env(tmp_path / "bad.env", **(POD | values))
    proc = run_script(script, "--config", str(cfg), "--dry-run")
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"error: {cfg}: {message}\n")


def test_a_refused_pod_slice_can_still_be_followed_and_deleted(tmp_path):
    """A slice made with the old scripts (base image) must not be stuck: only the TPU's users refuse it."""
    cfg = write_env(tmp_path / "old.env", ACCELERATOR_TYPE="v3-32")
    assert dry_run("delete_tpu", cfg, "--yes")[-1] == [*QR, "delete", "tpu-1", *WHERE, "--force", "--quiet"]
    assert "--worker=0" in dry_run("follow", cfg)[1]
    assert "--worker=0" in dry_run("stop", cfg)[1]


def test_upload_through_cloudops_storage(env_file, corpus_path, koelectra_vocab, tmp_path):
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else "python3"
    records = tmp_path / "records"
    records.mkdir()
    cmds = dry_run("upload", env_file, "--corpus", str(corpus_path), "--vocab", str(koelectra_vocab),
                   "--records", str(records))
    upload_cmd = [python, "-m", "cloudops.storage", "--project=proj-1", "upload"]
    assert cmds == [
        [*upload_cmd, str(corpus_path), "gs://bkt-1/run-1/corpus"],
        [*upload_cmd, str(koelectra_vocab), "gs://bkt-1/run-1/vocab"],
        [*upload_cmd, str(records), "gs://bkt-1/run-1/pretrain_tfrecords"],
    ]
    missing = run_script("upload", "--config", str(env_file), "--dry-run", "--corpus", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stderr) == (2, f"error: --corpus {tmp_path / 'nope'}: no such file or folder\n")
    nothing = run_script("upload", "--config", str(env_file), "--dry-run")
    assert nothing.stderr == "error: nothing to upload: give --corpus, --vocab and/or --records\n"


def test_build_data_and_train_run_as_background_jobs(env_file):
    (build,) = dry_run("build_data", env_file)
    assert build[:9] == [*TPU, "ssh", "tpu-1", *WHERE, "--worker=0"]
    assert remote(build) == [
        "cd", "$HOME/electra", "&&", "PATH=$HOME/electra-venv/bin:$PATH", "bash", "scripts/remote_job.sh", "build-data",
        "gs://bkt-1/run-1/logs", "--", "python", "build_pretraining_dataset.py",
        "--corpus-dir", "gs://bkt-1/run-1/corpus", "--vocab-file", "gs://bkt-1/run-1/vocab/vocab.txt",
        "--output-dir", "gs://bkt-1/run-1/pretrain_tfrecords", "--max-seq-length", "512", "--num-processes", "$(nproc)"]


def test_follow_and_tensorboard(env_file):
    describe, status = dry_run("follow", env_file, "--job", "build-data", "--lines", "5")
    assert describe == DESCRIBE
    assert remote(status) == ["LINES_SHOWN=5", "bash", "$HOME/electra/scripts/remote_job.sh", "--status", "build-data"]
    _, train = dry_run("follow", env_file, "--lines", "5")
    assert remote(train) == ["cd", "$HOME/electra", "&&", "$HOME/electra-venv/bin/python", "-m", "cloudops.supervisor",
                             "status", "$HOME/electra-logs/train/heartbeat.json", "--lines", "5"]
    (tb,) = dry_run("follow", env_file, "--tensorboard")
    assert tb[0].endswith("tensorboard") and tb[1:] == ["--logdir", "gs://bkt-1/run-1/models/electra-small", "--port", "6006"]


def test_export_runs_here_from_the_bucket_without_a_tpu(env_file, tmp_path):
    export, upload = dry_run("export", env_file, "--output", str(tmp_path / "out"), "--step", "4000")
    assert export[0].endswith("electra-export") and export[1:] == [
        "--model-dir", "gs://bkt-1/run-1/models/electra-small", "--output-dir", str(tmp_path / "out"), "--step", "4000",
        "--overwrite"]
    assert upload[1:] == ["-m", "cloudops.storage", "--project=proj-1", "upload", str(tmp_path / "out"),
                          "gs://bkt-1/run-1/export/electra-small"]


def test_doctor_on_the_vm_and_locally(env_file):
    (ssh,) = dry_run("doctor", env_file)
    assert remote(ssh)[3:] == [
        "$HOME/electra-venv/bin/electra-doctor", "--data-dir", "gs://bkt-1/run-1", "--model-name", "electra-small",
        "--zone", "europe-west4-a", "--accelerator-type", "v3-8", "--hparams", "configs/small.json", "--tpu", "local"]
    (local,) = dry_run("doctor", env_file, "--local")
    assert local[1:3] == ["-m", "cloudops.doctor"] and local[-4:] == [
        "--hparams", str(ROOT / "configs" / "small.json"), "--tpu", "none"]


def test_delete_dry_run(env_file):
    assert dry_run("delete_tpu", env_file) == [DESCRIBE, QR_DESCRIBE, [*QR, "delete", "tpu-1", *WHERE, "--force", "--quiet"]]


@pytest.mark.parametrize("script", ["create_tpu", "train", "delete_tpu", "upload"])
def test_config_errors_are_one_line(script, tmp_path):
    empty = write_env(tmp_path / "a.env", PROJECT="")
    proc = run_script(script, "--config", str(empty), "--dry-run")
    assert (proc.returncode, proc.stderr) == (2, f"error: {empty}: PROJECT is not set (see scripts/tpu.env.example)\n")

    typo = tmp_path / "b.env"
    typo.write_text(write_env(tmp_path / "c.env").read_text() + "ZOEN=us-central1-b\n")
    proc = run_script(script, "--config", str(typo), "--dry-run")
    n = len(typo.read_text().splitlines())
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {typo}:{n}: unknown key ZOEN (known: PROJECT ZONE ")

    proc = run_script(script, "--config", str(tmp_path / "missing.env"), "--dry-run")
    assert proc.stderr.startswith(f"error: config file {tmp_path / 'missing.env'} not found: copy scripts/tpu.env.example")

    bad_zone = write_env(tmp_path / "d.env", ZONE="europe-west4")
    proc = run_script(script, "--config", str(bad_zone), "--dry-run")
    assert proc.stderr == f"error: {bad_zone}: ZONE=europe-west4 is not a zone like europe-west4-a\n"


def test_config_is_read_not_executed(tmp_path):
    cfg = write_env(tmp_path / "x.env", TPU_NAME='"$(touch pwned)"')
    proc = run_script("create_tpu", "--config", str(cfg), "--dry-run")
    assert proc.returncode == 0
    assert "describe '$(touch pwned)'" in proc.stdout and not (tmp_path / "pwned").exists()


def test_missing_gcloud(env_file, tmp_path):
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    proc = run_script("create_tpu", "--config", str(env_file), env={"PATH": str(empty_path), "HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr == ("error: gcloud not found: install the Google Cloud CLI "
                           "(https://cloud.google.com/sdk/docs/install), then run: gcloud auth login\n")


# A stand-in `gcloud`: records each call; `describe` answers the next of the states in $TPU_STATES
# (tpu-vm: "STATE:TYPE" or "none" = no such TPU) or $QR_STATES (queued resource: STATE or none), the
# last one repeating; `create` fails with $CREATE_ERROR on stderr when it is set.
FAKE_GCLOUD = r"""#!/bin/bash
echo "$*" >> "$GCLOUD_LOG"
next_state() {  # the next of the space-separated states in the variable named $1
  local count="$GCLOUD_LOG.$1" i states
  i=$(cat "$count" 2>/dev/null || echo 0)
  echo $((i + 1)) > "$count"
  read -r -a states <<< "${!1}"
  ((i < ${#states[@]})) || i=$((${#states[@]} - 1))
  [[ "${states[$i]}" != none ]] || exit 1
  echo "${states[$i]}" | tr : '\t'
}
case " $* " in
  *" tpu-vm describe "*) next_state TPU_STATES ;;
  *" queued-resources describe "*failedData*) echo "$QR_REASON" ;;
  *" queued-resources describe "*) next_state QR_STATES ;;
  *" create "*) if [[ -n "${CREATE_ERROR:-}" ]]; then echo "$CREATE_ERROR" >&2; exit 1; fi ;;
esac
exit 0
"""
STOCKOUT = ('ERROR: (gcloud.compute.tpus.tpu-vm.create) {\n  "code": 8,\n  "message": "There is no more capacity in the '
            'zone \\"europe-west4-a\\"; you can try in another zone where Cloud TPU Nodes are offered"\n}')


@pytest.fixture()
def fake_gcloud(tmp_path):
    """Run a script against the stand-in gcloud: (process, the gcloud calls made, without 'gcloud')."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"

    def call(script, *args, tpu="none", queued="none", stdin="", env_values=None, **env_vars):
        for old in tmp_path.glob("gcloud.log*"):
            old.unlink()
        log.write_text("")
        first = [env_vars.pop("PATH_PREFIX")] if "PATH_PREFIX" in env_vars else []
        env = dict(os.environ, PATH=":".join([*first, str(bin_dir), os.environ["PATH"]]), GCLOUD_LOG=str(log), TPU_STATES=tpu,
                   QR_STATES=queued, TPU_POLL_SECONDS="0", TMPDIR=str(tmp_path), **env_vars)
        cfg = write_env(tmp_path / "tpu.env", **(env_values or {}))
        proc = run_script(script, "--config", str(cfg), *args, env=env, stdin=stdin)
        return proc, log.read_text().splitlines()
    return call


G_DESCRIBE = "compute tpus tpu-vm describe tpu-1 --project=proj-1 --zone=europe-west4-a --format=value(state,acceleratorType)"
G_QR_DESCRIBE = "compute tpus queued-resources describe tpu-1 --project=proj-1 --zone=europe-west4-a --format=value(state.state)"
G_QR_CREATE = ("compute tpus queued-resources create tpu-1 --project=proj-1 --zone=europe-west4-a --node-id=tpu-1 "
               "--accelerator-type=v3-8 --runtime-version=tpu-vm-tf-2.18.0-pjrt --valid-until-duration=6h")
G_QR_DELETE = "compute tpus queued-resources delete tpu-1 --project=proj-1 --zone=europe-west4-a --force --quiet"
G_ENABLE = "services enable tpu.googleapis.com --project=proj-1"


def test_create_waits_in_the_queue_until_the_tpu_is_active(fake_gcloud):
    proc, calls = fake_gcloud("create_tpu", queued="none WAITING_FOR_RESOURCES PROVISIONING ACTIVE")
    assert proc.returncode == 0, proc.stderr
    assert calls == [G_ENABLE, G_DESCRIBE, G_QR_DESCRIBE, G_QR_CREATE, G_QR_DESCRIBE, G_QR_DESCRIBE, G_QR_DESCRIBE]
    assert "queued: WAITING_FOR_RESOURCES for 0 min (waits up to QUEUE_WAIT=6h;" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "TPU VM tpu-1 is ready (queued resource ACTIVE); next: scripts/setup_tpu.sh"
    # still queued when the limit passes: one line, and the request stays queued
    proc, calls = fake_gcloud("create_tpu", queued="none WAITING_FOR_RESOURCES", TPU_WAIT_LIMIT_SECONDS="0")
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == (
        "error: TPU tpu-1 still WAITING_FOR_RESOURCES after QUEUE_WAIT=6h: no v3-8 capacity in europe-west4-a so far; "
        "rerun scripts/create_tpu.sh to queue again, or try another zone")
    # a rerun while it is being created waits for the same request instead of queueing another
    proc, calls = fake_gcloud("create_tpu", tpu="CREATING:v3-8", queued="PROVISIONING ACTIVE")
    assert proc.returncode == 0 and calls == [G_ENABLE, G_DESCRIBE, G_QR_DESCRIBE, G_QR_DESCRIBE]


def test_create_after_a_failed_request_and_the_failure_in_one_line(fake_gcloud):
    proc, calls = fake_gcloud("create_tpu", queued="FAILED ACTIVE")
    assert proc.returncode == 0 and calls == [G_ENABLE, G_DESCRIBE, G_QR_DESCRIBE, G_QR_DELETE, G_QR_CREATE,
                                              G_QR_DESCRIBE]
    proc, calls = fake_gcloud("create_tpu", queued="none FAILED", QR_REASON="Quota exceeded for TPUV3sPerProjectPerZone")
    assert (proc.returncode, proc.stderr.splitlines()[-1]) == (2, (
        "error: the queued request for TPU tpu-1 is FAILED: Quota exceeded for TPUV3sPerProjectPerZone; rerun "
        "scripts/create_tpu.sh to queue again"))


def test_create_checks_an_existing_tpu(fake_gcloud, tmp_path):
    cfg = tmp_path / "tpu.env"
    proc, calls = fake_gcloud("create_tpu", tpu="READY:v3-8")
    assert proc.returncode == 0 and calls == [G_ENABLE, G_DESCRIBE]
    assert proc.stderr.splitlines()[-1] == ("TPU VM tpu-1 (v3-8) already exists in europe-west4-a and is READY; skipped "
                           "(scripts/delete_tpu.sh deletes it)")
    for state in ("PREEMPTED", "TERMINATED"):
        proc, calls = fake_gcloud("create_tpu", tpu=f"{state}:v3-8")
        assert (proc.returncode, proc.stderr.splitlines()[-1]) == (2, (
            f"error: TPU VM tpu-1 in europe-west4-a is {state}: it cannot run anything again; recreate it and resume "
            f"training with: scripts/recreate_tpu.sh --config {cfg}"))
    proc, calls = fake_gcloud("create_tpu", tpu="READY:v2-8")
    assert (proc.returncode, proc.stderr.splitlines()[-1]) == (2, (
        "error: TPU VM tpu-1 in europe-west4-a is a v2-8, not ACCELERATOR_TYPE=v3-8: choose another TPU_NAME, or "
        "delete it first (scripts/delete_tpu.sh)"))
    assert calls == [G_ENABLE, G_DESCRIBE]  # nothing created


def test_a_stockout_is_one_line(fake_gcloud):
    proc, calls = fake_gcloud("create_tpu", env_values={"CAPACITY": "preemptible"}, CREATE_ERROR=STOCKOUT)
    assert proc.returncode == 2
    assert calls[-1] == ("compute tpus tpu-vm create tpu-1 --project=proj-1 --zone=europe-west4-a "
                         "--accelerator-type=v3-8 --version=tpu-vm-tf-2.18.0-pjrt --preemptible")
    assert proc.stderr.splitlines()[-1] == (
        'error: no v3-8 capacity in europe-west4-a for CAPACITY=preemptible right now (ERROR: '
        '(gcloud.compute.tpus.tpu-vm.create) { "code": 8, "message": "There is no more capacity in the zone '
        '\\"europe-west4-a\\"; you can try in another zone where Cloud TPU Nodes are offered" }); queued resources '
        'wait for it: use CAPACITY=spot or on-demand, another zone that offers v3-8, or retry later')


def test_recreate_after_a_preemption_is_one_command(fake_gcloud):
    proc, calls = fake_gcloud("recreate_tpu", tpu="PREEMPTED:v3-8 none", queued="SUSPENDED none ACTIVE")
    assert proc.returncode == 0, proc.stderr
    assert calls[:7] == [G_DESCRIBE, G_QR_DESCRIBE, G_QR_DELETE, G_ENABLE, G_DESCRIBE, G_QR_DESCRIBE, G_QR_CREATE]
    assert calls[7] == G_QR_DESCRIBE and calls[8].startswith("compute tpus tpu-vm scp ")
    setup, train = calls[9:]
    assert setup.startswith("compute tpus tpu-vm ssh tpu-1") and "electra-doctor --versions-only" in setup
    assert train.startswith("compute tpus tpu-vm ssh tpu-1") and "cloudops.supervisor prepare" in train
    assert "TPU VM tpu-1 is PREEMPTED (queued resource: SUSPENDED): deleting it to create it again" in proc.stderr


def test_delete_asks_unless_yes(fake_gcloud):
    for answer in ("n\n", "", "maybe\n"):
        proc, calls = fake_gcloud("delete_tpu", tpu="READY:v3-8", queued="ACTIVE", stdin=answer)
        assert proc.returncode == 1 and calls == [G_DESCRIBE, G_QR_DESCRIBE]
        assert "not deleted (pass --yes to skip this question)" in proc.stderr
    proc, calls = fake_gcloud("delete_tpu", tpu="READY:v3-8", queued="ACTIVE", stdin="y\n")
    assert proc.returncode == 0 and calls[-1] == G_QR_DELETE
    proc, calls = fake_gcloud("delete_tpu", "--yes", queued="WAITING_FOR_RESOURCES")  # withdraw a waiting request
    assert proc.returncode == 0 and calls[-1] == G_QR_DELETE
    proc, calls = fake_gcloud("delete_tpu", "--yes", tpu="PREEMPTED:v3-8")  # made without a queue
    assert calls[-1] == "compute tpus tpu-vm delete tpu-1 --project=proj-1 --zone=europe-west4-a --quiet"
    proc, calls = fake_gcloud("delete_tpu", "--yes")
    assert proc.returncode == 0 and len(calls) == 2 and "nothing to delete" in proc.stderr


def test_stop_takes_the_run_down_on_the_vm(fake_gcloud):
    proc, calls = fake_gcloud("stop", tpu="READY:v3-8")
    assert proc.returncode == 0 and calls[0] == G_DESCRIBE
    assert calls[1] == (
        "compute tpus tpu-vm ssh tpu-1 --project=proj-1 --zone=europe-west4-a --worker=0 --command=cd $HOME/electra && "
        "$HOME/electra-venv/bin/python -m cloudops.supervisor stop --state-dir $HOME/electra-logs/train; "
        "sudo systemctl disable --now --quiet electra-train")
    proc, calls = fake_gcloud("stop", tpu="PREEMPTED:v3-8")
    assert proc.returncode == 0 and calls == [G_DESCRIBE]
    assert proc.stderr == "TPU VM tpu-1 is PREEMPTED: nothing runs on it (scripts/delete_tpu.sh stops its billing)\n"


def test_status_and_follow_read_the_bucket_without_ssh(fake_gcloud, emulator_host, store, bucket, tmp_path):
    """A preempted TPU: status names it and how to resume; the heartbeat and log come from gs:// (the emulator)."""
    client = store.client.bucket(bucket)
    beat = {"name": "train", "state": "running", "attempt": 1, "step": 1200, "num_train_steps": 800000,
            "examples_per_second": 1536.0, "updated": time.time() - 5, "host": "t1v-n-0", "sync_seconds": 60,
            "log": f"gs://{bucket}/run-1/logs/train-t1v-n-0.log"}
    client.blob("run-1/logs/train-heartbeat.json").upload_from_string(json.dumps(beat))
    client.blob("run-1/logs/train-t1v-n-0.log").upload_from_string("step 1190\nstep 1200\n")
    python_dir = tmp_path / "py"
    python_dir.mkdir()
    (python_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # local_python: this interpreter
    (python_dir / "python3").chmod(0o755)
    env = dict(STORAGE_EMULATOR_HOST=emulator_host, PYTHONPATH=str(ROOT))
    proc, calls = fake_gcloud("status", tpu="PREEMPTED:v3-8", queued="SUSPENDED", env_values={"BUCKET": bucket},
                              **env, PATH_PREFIX=str(python_dir))
    assert calls == [G_DESCRIBE, G_QR_DESCRIBE]
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    assert lines[0] == (f"TPU tpu-1 (v3-8, on-demand): PREEMPTED; resume with: scripts/recreate_tpu.sh --config "
                        f"{tmp_path / 'tpu.env'}")
    assert re.fullmatch(r"train: running \(attempt 1\), step 1200/800000 \(0\.1%\), 1536\.0 examples/s, "
                        r"heartbeat [5-9] s ago from t1v-n-0", lines[1]), lines[1]
    proc, calls = fake_gcloud("follow", "--lines", "1", tpu="PREEMPTED:v3-8", env_values={"BUCKET": bucket}, **env,
                              PATH_PREFIX=str(python_dir))
    assert calls == [G_DESCRIBE] and proc.stdout.splitlines()[1:] == ["step 1200"]
    assert f"TPU VM tpu-1 is PREEMPTED: the run's heartbeat and log as last shipped to gs://{bucket}/run-1/logs/" in proc.stderr


def _job(home: pathlib.Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), LOG_SYNC_SECONDS="1", **env_vars)
    return subprocess.run(["bash", str(SCRIPTS / "remote_job.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def _wait_finished(home: pathlib.Path, name: str) -> None:
    deadline = time.monotonic() + 30
    while (home / "electra-logs" / f"{name}.pid").exists():
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.1)


def test_remote_job_runs_once_in_background_and_ships_its_log(tmp_path):
    home, logs = tmp_path / "home", tmp_path / "bucket-logs"
    home.mkdir()
    script = "echo step 1; sleep 2; echo done"
    started = _job(home, "train", str(logs), "--", "bash", "-c", script)
    assert started.returncode == 0 and started.stdout.startswith("started train (pid ")
    again = _job(home, "train", str(logs), "--", "bash", "-c", script)
    assert "train is already running" in again.stdout and "not started again" in again.stdout
    assert _job(home, "--status", "train").stdout.startswith("train: running (pid ")
    _wait_finished(home, "train")

    shipped = (logs / f"train-{socket.gethostname()}.log").read_text().splitlines()
    assert shipped[1:] == ["step 1", "done", "exit status 0"]
    status = _job(home, "--status", "train").stdout.splitlines()
    assert status[0] == "train: not running" and status[-1] == "exit status 0"

    _job(home, "fail", str(logs), "--", "bash", "-c", "echo oops; exit 3")
    _wait_finished(home, "fail")
    assert (logs / f"fail-{socket.gethostname()}.log").read_text().splitlines()[-2:] == ["oops", "exit status 3"]


def test_remote_job_log_reaches_the_bucket(emulator_host, store, bucket, tmp_path):
    """On the VM the log goes to gs://BUCKET/RUN/logs/ through cloudops.storage (here: the emulator)."""
    home = tmp_path / "home"
    home.mkdir()
    venv_first = f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"  # `python` = this interpreter
    started = _job(home, "build-data", f"gs://{bucket}/run/logs", "--", "bash", "-c", "echo built 3 shards",
                   PATH=venv_first, STORAGE_EMULATOR_HOST=emulator_host)
    assert started.returncode == 0, started.stderr
    _wait_finished(home, "build-data")
    text = store.client.bucket(bucket).blob(f"run/logs/build-data-{socket.gethostname()}.log").download_as_text()
    assert text.splitlines()[1:] == ["built 3 shards", "exit status 0"]


def test_the_train_command_installs_the_supervised_run_on_the_vm(tmp_path):
    """train.sh's remote command run by bash as the VM runs it: HOME holds the checkout and the venv, `sudo`
    and `systemctl` are stand-ins that record, and so is the doctor (its smoke test needs a TPU). The smoke test
    runs first; the supervisor's job is the trainer's command word for word (HPARAMS_OVERRIDE last, quotes
    intact), ON_FINISH's command; the unit is installed and started; while it is active a rerun does nothing
    (no smoke test on a busy TPU); a failed smoke test starts nothing."""
    override = '{"learning_rate": 1e-4, "_why": "it\'s late"}'
    cfg = write_env(tmp_path / "o.env", HPARAMS_OVERRIDE=override, ON_FINISH="export")
    (train,) = dry_run("train", cfg)
    (command,) = [a[len("--command="):] for a in train if a.startswith("--command=")]
    home, vm_bin, log = tmp_path / "home", tmp_path / "vmbin", tmp_path / "vm.log"
    (home / "electra-venv" / "bin").mkdir(parents=True)
    (home / "electra").symlink_to(ROOT)
    vm_bin.mkdir()
    for name, text in ((home / "electra-venv" / "bin" / "python", f'exec {sys.executable} "$@"'),
                       (home / "electra-venv" / "bin" / "electra-doctor",
                        'echo "electra-doctor $*" >> "$VM_LOG"; exit "$SMOKE_RC"'),
                       (vm_bin / "sudo", 'echo "sudo $*" >> "$VM_LOG"'),
                       (vm_bin / "systemctl", 'echo "systemctl $*" >> "$VM_LOG"; exit "$ACTIVE_RC"')):
        name.write_text(f"#!/bin/sh\n{text}\n")
        name.chmod(0o755)
    env = dict(os.environ, PATH=f"{vm_bin}:{os.environ['PATH']}", HOME=str(home), PYTHONPATH=str(ROOT),
               VM_LOG=str(log), ACTIVE_RC="3", SMOKE_RC="0")
    proc = subprocess.run([BASH, "-c", command], env=env, capture_output=True, text=True, timeout=60)
    unit = home / "electra-logs" / "train" / "electra-train.service"
    assert (proc.returncode, proc.stdout) == (0, f"{unit}\nstarted electra-train (systemd: restarts after crashes, "
                                                 "hangs and reboots)\n"), proc.stderr
    job = json.loads((home / "electra-logs" / "train" / "job.json").read_text())
    assert job["argv"] == [
        "python", "run_pretraining.py", "--data-dir", "gs://bkt-1/run-1", "--vocab-file",
        "gs://bkt-1/run-1/vocab/vocab.txt", "--model-name", "electra-small", "--hparams", "configs/small.json",
        "--hparams", override]
    assert job["on_success"] == (
        "electra-export --model-dir gs://bkt-1/run-1/models/electra-small --output-dir $HOME/electra-export/electra-small "
        "--overwrite && python -m cloudops.storage upload $HOME/electra-export/electra-small "
        "gs://bkt-1/run-1/export/electra-small")
    assert (job["log_dir"], job["stall_seconds"], job["env"]) == ("gs://bkt-1/run-1/logs", 10800, {})
    assert f"--state-dir {home}/electra-logs/train\n" in unit.read_text()
    assert log.read_text().splitlines() == [
        "systemctl is-active --quiet electra-train", "electra-doctor --smoke --tpu local --accelerator-type v3-8",
        f"sudo cp {unit} /etc/systemd/system/",
        "sudo systemctl daemon-reload", "sudo systemctl enable --now --quiet electra-train"]
    log.unlink()
    again = subprocess.run([BASH, "-c", command], env={**env, "ACTIVE_RC": "0"}, capture_output=True, text=True,
                           timeout=60)
    assert again.stdout == "electra-train is already running; not started again (scripts/stop.sh stops it)\n"
    assert log.read_text().splitlines() == ["systemctl is-active --quiet electra-train"]
    log.unlink()
    shutil.rmtree(home / "electra-logs")
    failed = subprocess.run([BASH, "-c", command], env={**env, "SMOKE_RC": "1"}, capture_output=True, text=True,
                            timeout=60)
    assert (failed.returncode, failed.stdout) == (1, "")
    assert log.read_text().splitlines() == ["systemctl is-active --quiet electra-train",
                                            "electra-doctor --smoke --tpu local --accelerator-type v3-8"]
    assert not (home / "electra-logs").exists()  # no job, no unit


def test_hparams_override_without_a_commit_and_one_records_length(tmp_path):
    """HPARAMS_OVERRIDE is layered last for the doctor and the trainer; the records are built at the hparams'
    max_seq_length (the override's, if it sets one); a leftover MAX_SEQ_LENGTH must agree."""
    cfg = write_env(tmp_path / "o.env", HPARAMS_OVERRIDE='{"max_seq_length": 256, "learning_rate": 1e-4}')
    (doctor,) = dry_run("doctor", cfg)
    assert remote(doctor)[-6:] == ["--hparams", "configs/small.json", "--hparams",
                                   '{"max_seq_length": 256, "learning_rate": 1e-4}', "--tpu", "local"]
    (local,) = dry_run("doctor", cfg, "--local")
    assert local[-6:] == ["--hparams", str(ROOT / "configs" / "small.json"), "--hparams",
                          '{"max_seq_length": 256, "learning_rate": 1e-4}', "--tpu", "none"]
    (build,) = dry_run("build_data", cfg)
    words = remote(build)
    assert words[words.index("--max-seq-length") + 1] == "256"
    stale = write_env(tmp_path / "s.env", MAX_SEQ_LENGTH="128")
    proc = run_script("build_data", "--config", str(stale), "--dry-run")
    assert (proc.returncode, proc.stderr) == (2, (
        f"error: {stale}: MAX_SEQ_LENGTH=128 but the hparams say max_seq_length 512: remove MAX_SEQ_LENGTH (the "
        "records' length is the hparams'), or set max_seq_length in HPARAMS_OVERRIDE\n"))
    bad = write_env(tmp_path / "b.env", HPARAMS_OVERRIDE="learning_rate=1e-4")
    proc = run_script("train", "--config", str(bad), "--dry-run")
    assert (proc.returncode, proc.stderr) == (2, (
        f"error: {bad}: HPARAMS_OVERRIDE must be a JSON object on one line ({{\"learning_rate\": 1e-4}}) or a "
        "gs://.../FILE.json\n"))


def test_smoke_run_on_the_vm(env_file):
    (ssh,) = dry_run("smoke", env_file, "--steps", "400", "--profile")
    words = remote(ssh)
    assert words[:9] == ["cd", "$HOME/electra", "&&", "if", "systemctl", "is-active", "--quiet", "electra-train;", "then"]
    assert words[words.index("PATH=$HOME/electra-venv/bin:$PATH"):] == [
        "PATH=$HOME/electra-venv/bin:$PATH", "python", "-m", "workflow.smoke", "--data-dir", "gs://bkt-1/run-1",
        "--vocab-file", "gs://bkt-1/run-1/vocab/vocab.txt", "--model-name", "electra-small", "--hparams",
        "configs/small.json", "--accelerator-type", "v3-8", "--capacity", "on-demand", "--steps", "400", "--profile"]
    proc = run_script("smoke", "--config", str(env_file), "--dry-run", "--steps", "many")
    assert (proc.returncode, proc.stderr) == (2, "error: --steps needs a number of steps\n")


def test_remote_job_pidfile_names_a_process_group_and_a_reused_pid_does_not_match(tmp_path):
    home, logs = tmp_path / "home", tmp_path / "bucket-logs"
    (home / "electra-logs").mkdir(parents=True)
    # a pidfile left from before a reboot whose PID now belongs to another process (this test's)
    (home / "electra-logs" / "build-data.pid").write_text(f"{os.getpid()} 1\n")
    started = _job(home, "build-data", str(logs), "--", "bash", "-c", "sleep 30 & sleep 30")
    assert started.stdout.startswith("started build-data (pid "), started.stdout
    pid, start = (int(w) for w in (home / "electra-logs" / "build-data.pid").read_text().split())
    assert os.getpgid(pid) == pid and pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == str(start)
    assert _job(home, "--status", "build-data").stdout.startswith(f"build-data: running (pid {pid})")
    os.killpg(pid, 15)  # the whole job, its background sleep included
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-g", str(pid)], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the job's group survived"
        time.sleep(0.1)
    # its pidfile is left behind (killed, it could not clean up), but names no running job
    assert _job(home, "--status", "build-data").stdout.startswith("build-data: not running")


def test_another_create_failure_is_one_line_with_the_command(fake_gcloud):
    proc, calls = fake_gcloud("create_tpu", CREATE_ERROR="ERROR: (gcloud.compute.tpus.queued-resources.create) "
                                                         "PERMISSION_DENIED: tpu.queuedResources.create denied")
    assert proc.returncode == 2 and calls[-1] == G_QR_CREATE
    assert proc.stderr.splitlines()[-1] == (
        "error: ERROR: (gcloud.compute.tpus.queued-resources.create) PERMISSION_DENIED: tpu.queuedResources.create "
        "denied (exit status 1 from: gcloud " + G_QR_CREATE + ")")


def test_a_dry_run_of_the_unedited_example_says_whose_project_it_shows(tmp_path):
    example = run_script("create_bucket", "--config", str(SCRIPTS / "tpu.env.example"), "--dry-run")
    assert example.returncode == 0 and "--project=my-project" in example.stdout
    assert example.stderr == (f"dry run with the example's PROJECT=my-project BUCKET=my-electra-bucket (from "
                              f"{SCRIPTS / 'tpu.env.example'}): set your own before running it for real\n")
    own = run_script("create_bucket", "--config", str(write_env(tmp_path / "tpu.env")), "--dry-run")
    assert (own.returncode, own.stderr) == (0, "")
