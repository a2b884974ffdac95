"""Faults of a long run's state (issue 22): checkpoints found from the files, one writer per folder,
export beside a rotating training, hparams out of range, SIGTERM, disk full, deterministic export.

Each test runs the entry points (in process through `run_cli`, or as real processes where two
writers or a signal are the point) on real NSMC records with a tiny model, and asserts the exit
code, the one `error:` line (or the warning) and the bytes or tensors left on disk.
"""
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from rtd_helpers import ROOT, cli, copy_run, export, files, pretrain, write_nsmc_records
from rtd_helpers import tiny_run_hparams as hp

PYTHON_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def script(*argv) -> list[str]:
    return [sys.executable, "-c", "import sys; from foundation.errors import run_cli; "
            f"from {argv[0]} import main; run_cli(lambda: main(sys.argv[1:]))", *argv[1:]]


def ckpt_files(directory) -> dict[str, bytes]:
    return {n: b for n, b in files(directory).items() if n.startswith("ckpt-")}


def tensors(prefix) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if name.startswith("model/")}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_nsmc_records(d, max_seq_length=32, num_examples=96, num_shards=3)
    return d


@pytest.fixture(scope="module")
def trained(data_dir):
    """A finished 6-step run (ckpt-3 and ckpt-6), copied by the tests that change it."""
    from pretrain.training.run import main

    assert main(["--data-dir", str(data_dir), "--model-name", "trained", "--hparams", hp()]) == 0
    return data_dir / "models" / "trained"


# ---- (2) checkpoints found from the files ------------------------------------------------------


@pytest.mark.parametrize("state", ["deleted", "garbage"])
def test_a_lost_state_file_resumes_from_the_newest_checkpoint(capsys, caplog, data_dir, trained, state):
    name = f"state{state}"
    run = copy_run(trained, data_dir, name)
    if state == "deleted":
        (run / "checkpoint").unlink()
    else:
        (run / "checkpoint").write_text("garbage {{ not a proto\n")
    before = ckpt_files(run)
    code, errors, _ = pretrain(capsys, data_dir, name, hp(num_train_steps=9))
    assert (code, errors) == (0, [])
    problem = "missing" if state == "deleted" else "unreadable"
    assert (f"the checkpoint state file {run / 'checkpoint'} is {problem}; using {run / 'ckpt-6'}, the newest usable "
            "checkpoint found by listing the folder") in caplog.text
    assert f"resumed from {run / 'ckpt-6'} at step 6" in caplog.text
    after = ckpt_files(run)
    assert {n: after[n] for n in before} == before  # ckpt-3 and ckpt-6 untouched, byte for byte
    assert sorted(n for n in after if n.endswith(".index")) == ["ckpt-3.index", "ckpt-6.index", "ckpt-9.index"]
    import tensorflow as tf

    assert tf.train.load_checkpoint(str(run / "ckpt-9")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 9
    for key, value in tensors(run / "ckpt-6").items():
        np.testing.assert_array_equal(value, tensors(trained / "ckpt-6")[key], err_msg=key)
    assert 'model_checkpoint_path: "ckpt-9"' in (run / "checkpoint").read_text()


def test_the_keep_limit_counts_the_checkpoints_on_disk(capsys, data_dir, trained):
    """State file gone, keep_checkpoint_max 2: the next save rotates out ckpt-3 (the oldest on disk), nothing else."""
    run = copy_run(trained, data_dir, "keeplimit")
    (run / "checkpoint").unlink()
    ckpt6 = {n: b for n, b in ckpt_files(run).items() if n.startswith("ckpt-6")}
    code, errors, _ = pretrain(capsys, data_dir, "keeplimit", hp(num_train_steps=9, keep_checkpoint_max=2))
    assert (code, errors) == (0, [])
    after = ckpt_files(run)
    assert sorted(n for n in after if n.endswith(".index")) == ["ckpt-6.index", "ckpt-9.index"]
    assert {n: after[n] for n in ckpt6} == ckpt6


def test_a_save_never_overwrites_a_checkpoint_on_disk(data_dir, trained):
    import tensorflow as tf

    from foundation.errors import UserError
    from pretrain.training import checkpoints

    run = copy_run(trained, data_dir, "collide")
    before = ckpt_files(run)
    model, _, _ = checkpoints.restore_model(str(run))
    ckpt = tf.train.Checkpoint(model=checkpoints.model_checkpoint(model), step=tf.Variable(6, dtype=tf.int64))
    with pytest.raises(UserError) as refused:
        checkpoints.save(checkpoints.make_manager(ckpt, str(run), 5), 6)
    assert str(refused.value) == (f"checkpoint {run / 'ckpt-6'} is already on disk; not overwriting it (was it "
                                  "written by another run into this folder?)")
    assert ckpt_files(run) == before


def test_export_finds_the_checkpoints_without_a_state_file(capsys, caplog, data_dir, trained, tmp_path):
    run = copy_run(trained, data_dir, "exportnostate")
    (run / "checkpoint").unlink()
    code, errors, _ = export(capsys, run, tmp_path / "hf")
    assert (code, errors) == (0, [])
    assert "| training step | 6 of 6 |" in (tmp_path / "hf" / "discriminator" / "README.md").read_text()
    assert f"is missing; using {run / 'ckpt-6'}" in caplog.text
    code, errors, _ = export(capsys, run, tmp_path / "hf3", "--step", "3")
    assert (code, errors) == (0, [])
    assert "| training step | 3 of 6 |" in (tmp_path / "hf3" / "discriminator" / "README.md").read_text()


def test_eval_finds_the_checkpoints_without_a_state_file(capsys, caplog, data_dir, trained):
    run = copy_run(trained, data_dir, "evalnostate")
    (run / "checkpoint").write_text("garbage\n")
    before = ckpt_files(run)
    code, errors, _ = pretrain(capsys, data_dir, "evalnostate", hp(), "--no-do-train", "--do-eval")
    assert (code, errors) == (0, [])
    assert json.loads((run / "eval_results.json").read_text())["step"] == 6
    assert f"is unreadable; using {run / 'ckpt-6'}" in caplog.text
    assert ckpt_files(run) == before


# ---- (4) export beside a training that rotates its checkpoints -----------------------------------


def test_export_reads_past_a_checkpoint_rotated_away_while_listing(capsys, caplog, data_dir, trained, tmp_path,
                                                                   monkeypatch):
    """The listing names ckpt-9 (saved, then rotated away by the running training before it is read)."""
    from pretrain.training import checkpoints

    run = copy_run(trained, data_dir, "rotating")
    listings = [[str(run / "ckpt-9"), str(run / "ckpt-6")]]
    real = checkpoints.list_checkpoints
    monkeypatch.setattr(checkpoints, "list_checkpoints", lambda d: listings.pop() if listings else real(d))
    code, errors, err = export(capsys, run, tmp_path / "hf")
    assert (code, errors) == (0, [])
    assert ("1 newer checkpoint(s) were rotated away by the running training while read (ckpt-9); used "
            f"{run / 'ckpt-6'}") in caplog.text
    assert "damaged" not in caplog.text and "remove them" not in err
    assert "| training step | 6 of 6 |" in (tmp_path / "hf" / "discriminator" / "README.md").read_text()
    assert "WARNING" not in err  # no TensorFlow warnings about unrestored values


def test_all_damaged_checkpoints_never_advise_deleting(capsys, data_dir, trained, tmp_path):
    run = copy_run(trained, data_dir, "alldamaged")
    for step in (3, 6):
        data = run / f"ckpt-{step}.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:100])
    before = files(run)
    code, errors, err = export(capsys, run, tmp_path / "hf")
    assert (code, errors) == (2, [f"error: no usable checkpoint in {run}: all 2 are damaged or hold NaN/Inf (newest "
                                  f"{run / 'ckpt-6'}); export or resume from a copy of an earlier run, or train under "
                                  "a new --model-name"])
    assert "remove them" not in err and files(run) == before
    assert len(err.splitlines()) <= 4, err  # the two fall-back warnings and the line: no TensorFlow noise


# ---- (3) one writer per folder -------------------------------------------------------------------


def live_lease(directory, *, age=0.0, host="other-vm", pid=4242) -> bytes:
    from foundation import lease

    now = time.time()
    data = lease.Holder("someone", host, pid, now - age - 60, now - age).to_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / lease.LEASE_FILE).write_bytes(data)
    return data


HOLDER_RE = r"\(host other-vm, pid 4242, started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, last heartbeat \d+ s ago\)"


@pytest.mark.slow
def test_two_trainings_into_one_model_dir(data_dir, tmp_path):
    """A real second electra-pretrain is refused naming the first; SIGTERM then ends the first with its line."""
    model = data_dir / "models" / "twowriters"
    args = ["pretrain.training.run", "--data-dir", str(data_dir), "--model-name", "twowriters", "--hparams",
            hp(num_train_steps=100000, save_checkpoints_steps=2, iterations_per_loop=2, keep_checkpoint_max=0)]
    first = subprocess.Popen(script(*args), env=PYTHON_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (model / "ckpt-2.index").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() else ""
            time.sleep(0.2)
        second = subprocess.run(script(*args[:-1], hp(learning_rate=0.5)), env=PYTHON_ENV, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and re.fullmatch(
            rf"error: {re.escape(str(model))} is being written by another run "
            rf"\(host {re.escape(socket.gethostname())}, "
            rf"pid {first.pid}, started .* UTC, last heartbeat \d+ s ago\); wait for it to end, or stop it: its lease "
            rf"{re.escape(str(model / '.lease.json'))} expires 90 s after its last heartbeat", errors[0]), errors
        assert json.loads((model / "run_config.json").read_text())["hparams"]["learning_rate"] == 1e-3  # the first's
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143  # 128 + SIGTERM: a supervisor restarts it (2 would mean "refused")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    match = re.fullmatch(rf"error: terminated at step \d+; last checkpoint: {re.escape(str(model))}/ckpt-(\d+); "
                         r"rerun the same command to resume from it", lines[0]) if len(lines) == 1 else None
    assert match, lines
    assert not (model / ".lease.json").exists()  # released at the exit
    steps = sorted(int(p.name[5:-6]) for p in model.glob("ckpt-*.index"))
    assert steps == list(range(2, 2 * len(steps) + 1, 2))  # every save of the first run, none lost
    assert int(match.group(1)) in steps[-2:]  # the newest (or, if SIGTERM came inside a save, the one before)


def test_a_live_lease_refuses_training(capsys, data_dir):
    model = data_dir / "models" / "leased"
    held = live_lease(model)
    code, errors, _ = pretrain(capsys, data_dir, "leased", hp())
    assert code == 2 and len(errors) == 1 and re.fullmatch(
        rf"error: {re.escape(str(model))} is being written by another run {HOLDER_RE}; wait for it to end, or stop "
        rf"it: its lease {re.escape(str(model / '.lease.json'))} expires 90 s after its last heartbeat", errors[0])
    assert files(model) == {".lease.json": held}  # nothing written, the holder's lease untouched


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("killed", ["elsewhere", "here"])
def test_a_stale_lease_is_taken_over(capsys, caplog, data_dir, killed):
    """A lease not renewed for an hour (another host), or one of a process gone on this host (just now)."""
    model = data_dir / "models" / f"stale{killed}"
    if killed == "elsewhere":
        live_lease(model, age=3600)
        holder = r"host other-vm, pid 4242, .*, last heartbeat 36\d\d s ago"
        why = "it stopped renewing it over 90 s ago"
    else:
        pid = dead_pid()
        live_lease(model, host=socket.gethostname(), pid=pid)
        holder, why = rf"host {re.escape(socket.gethostname())}, pid {pid}, .*, last heartbeat 0 s ago", \
            "its process is gone on this host"
    code, errors, _ = pretrain(capsys, data_dir, model.name, hp(num_train_steps=3))
    assert (code, errors) == (0, [])
    assert re.search(rf"took over the lease {re.escape(str(model / '.lease.json'))} of a killed run \({holder}\): "
                     rf"{why}", caplog.text), caplog.text
    assert (model / "ckpt-3.index").exists() and not (model / ".lease.json").exists()


def test_two_record_builds_into_one_output(tmp_path, corpus_path, koelectra_vocab):
    """Two real electra-build-data at once: exactly one builds, the other is one line; the records are whole."""
    out = tmp_path / "records"
    args = ["data_prep.build", "--corpus-dir", str(corpus_path), "--vocab-file", str(koelectra_vocab),
            "--output-dir", str(out), "--max-seq-length", "64"]
    procs = [subprocess.Popen(script(*args), env=PYTHON_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # [0, 0]: the second found the first's finished output
    for code, err in results:
        if code == 2:
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and re.fullmatch(
                rf"error: {re.escape(str(out))} is being written by another run \(host .*, pid \d+, .*\); wait for it "
                r"to end, or stop it: .*", errors[0]), errors
    from data_prep import records

    manifest = records.read_manifest(str(out))
    assert records.check_record_dir(str(out), 64, str(koelectra_vocab), full=True) == manifest
    assert not (out / ".lease.json").exists()


def test_a_live_lease_refuses_a_stage_and_the_demo(capsys, tmp_path, corpus_path):
    from data_prep.clean import main as clean_main
    from workflow.pipeline import main as demo_main

    out = tmp_path / "clean"
    held = live_lease(out)
    code, errors, _ = cli(capsys, clean_main, [str(corpus_path), str(out)])
    assert code == 2 and len(errors) == 1 and re.fullmatch(
        rf"error: {re.escape(str(out))} is being written by another run {HOLDER_RE}; .*", errors[0]), errors
    assert files(out) == {".lease.json": held}
    demo = tmp_path / "demo"
    held = live_lease(demo)
    code, errors, _ = cli(capsys, demo_main, ["--out-dir", str(demo), "--preset", "tiny", "--train-steps", "1"])
    assert code == 2 and len(errors) == 1 and re.fullmatch(
        rf"error: {re.escape(str(demo))} is being written by another run {HOLDER_RE}; .*", errors[0]), errors
    assert [p.name for p in demo.iterdir()] == [".lease.json"] and (demo / ".lease.json").read_bytes() == held


def test_a_lease_on_cloud_storage(bucket, monkeypatch):
    """Create, refuse a second holder, renew, release and take over a stale lease on gs:// (the emulator).

    gcp-storage-emulator ignores `if_generation_match`, so the race two VMs run (both create at
    once) is not reproduced here; what it checks is the object, its content and its life cycle.
    """
    from foundation import gcs, lease
    from foundation.errors import UserError

    monkeypatch.setenv("ELECTRA_LEASE_HEARTBEAT_SECONDS", "0.2")
    folder = f"gs://{bucket}/models/run"
    path = f"{folder}/.lease.json"
    with lease.hold(folder) as held:
        first = lease.Holder.from_bytes(gcs._bucket(path).blob("models/run/.lease.json").download_as_bytes())
        assert (first.host, first.pid) == (socket.gethostname(), os.getpid())
        with pytest.raises(UserError, match=rf"^gs://{bucket}/models/run is being written by another run \(host "):
            lease.Lease(folder).acquire()
        time.sleep(0.7)
        renewed = lease.Holder.from_bytes(gcs._bucket(path).blob("models/run/.lease.json").download_as_bytes())
        assert renewed.heartbeat > first.heartbeat and renewed.started == first.started
        held.check()
    assert gcs._bucket(path).get_blob("models/run/.lease.json") is None  # released
    stale = lease.Holder("x", "dead-vm", 7, time.time() - 7200, time.time() - 3600)
    gcs._bucket(path).blob("models/run/.lease.json").upload_from_string(stale.to_bytes())
    with lease.hold(folder):
        now = lease.Holder.from_bytes(gcs._bucket(path).blob("models/run/.lease.json").download_as_bytes())
        assert now.host == socket.gethostname()
    assert gcs._bucket(path).get_blob("models/run/.lease.json") is None


# ---- (7) every hparam range-checked before any stage runs ------------------------------------------


SEED_WHY = "what numpy's seed, which Keras sets, accepts"
BAD_HPARAMS = [
    ({"hidden_size": None}, "hparam 'hidden_size' must not be null"),
    ({"hidden_size": "64"}, "hparam 'hidden_size' must be int, got '64'"),
    ({"hidden_size": 0}, "hparam 'hidden_size' = 0: must be at least 1"),
    ({"num_attention_heads": 0}, "hparam 'num_attention_heads' = 0: must be at least 1"),
    ({"num_attention_heads": -4}, "hparam 'num_attention_heads' = -4: must be at least 1"),
    ({"num_attention_heads": 3}, "hparam 'hidden_size' = 32: must be divisible by num_attention_heads 3"),
    ({"embedding_size": 0}, "hparam 'embedding_size' = 0: must be at least 1"),
    ({"intermediate_size": 0}, "hparam 'intermediate_size' = 0: must be at least 1"),
    ({"type_vocab_size": 0}, "hparam 'type_vocab_size' = 0: must be at least 2: the records' segment ids are 0 and 1"),
    ({"seed": -1}, f"hparam 'seed' = -1: must be in [0, 2147483647]: {SEED_WHY}"),
    ({"seed": 1e20}, "hparam 'seed' must be int, got 1e+20"),
    ({"seed": 2**40}, f"hparam 'seed' = 1099511627776: must be in [0, 2147483647]: {SEED_WHY}"),
    ({"hidden_dropout_prob": 1.0}, "hparam 'hidden_dropout_prob' = 1.0: must be in [0, 1): 1 drops every activation"),
    ({"attention_probs_dropout_prob": -0.1},
     "hparam 'attention_probs_dropout_prob' = -0.1: must be in [0, 1): 1 drops every attention weight"),
    ({"model_hparam_overrides": [64]}, "hparam 'model_hparam_overrides' in hparams must be a JSON object of encoder "
                                       "keys, got [64]"),
    ({"model_hparam_overrides": "big"}, "hparam 'model_hparam_overrides' in hparams must be a JSON object of "
                                        "encoder keys, got 'big'"),
    ({"keep_checkpoint_max": -1}, "hparam 'keep_checkpoint_max' = -1: must be at least 0"),
    ({"num_eval_steps": 0}, "hparam 'num_eval_steps' = 0: must be at least 1"),
    ({"weight_decay_rate": -0.01}, "hparam 'weight_decay_rate' = -0.01: must be at least 0"),
    ({"clip_norm": float("inf")}, "hparam 'clip_norm' = inf: must be at least 0"),
    ({"generator_layers": 0.0}, "hparam 'generator_layers' = 0.0: must be in (0, 1]: a fraction of num_hidden_layers"),
    ({"num_gpus": -1}, "hparam 'num_gpus' = -1: must be at least 0"),
    ({"max_position_embeddings": 0}, "hparam 'max_position_embeddings' = 0: must be at least 1"),
]


@pytest.mark.parametrize("bad,line", BAD_HPARAMS, ids=[json.dumps(bad) for bad, _ in BAD_HPARAMS])
def test_an_hparam_out_of_range_is_one_line_before_anything_is_written(capsys, data_dir, bad, line):
    from pretrain.training.run import main

    name = "bad" + re.sub(r"\W", "", json.dumps(bad))
    code, errors, _ = cli(capsys, main, ["--data-dir", str(data_dir), "--model-name", name, "--hparams", hp(),
                                         "--hparams", json.dumps(bad)])
    expected = line.replace("in hparams", "in --hparams")
    assert (code, errors) == (2, [f"error: {expected}"])
    assert not (data_dir / "models" / name).exists()


@pytest.mark.parametrize("bad,line", [BAD_HPARAMS[i] for i in (0, 3, 12, 14)])
def test_the_demo_checks_the_hparams_before_cleaning(capsys, tmp_path, bad, line):
    from workflow.pipeline import main

    out = tmp_path / "demo"
    code, errors, _ = cli(capsys, main, ["--out-dir", str(out), "--preset", "tiny", "--hparams", json.dumps(bad)])
    assert (code, errors) == (2, [f"error: {line.replace('in hparams', 'in --hparams')}"])
    assert not out.exists()  # clean and vocab never ran


# ---- disk full, deterministic export ---------------------------------------------------------------


def limited(megabytes: float):
    """A child whose files cannot grow past `megabytes` (EFBIG, the disk-full kind of OSError)."""
    limit = int(megabytes * 1e6)
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_disk_full_in_training_is_one_line(data_dir, trained):
    run = copy_run(trained, data_dir, "diskfull")
    before = ckpt_files(run)
    size = (run / "ckpt-6.data-00000-of-00001").stat().st_size
    res = subprocess.run(script("pretrain.training.run", "--data-dir", str(data_dir), "--model-name", "diskfull",
                                "--hparams", hp(num_train_steps=9)),
                         env=PYTHON_ENV, capture_output=True, text=True, timeout=180, preexec_fn=limited(size / 2e6))
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in res.stderr
    assert len(errors) == 1 and errors[0].startswith("error: disk full") and errors[0].endswith(
        f"last checkpoint: {run / 'ckpt-6'}; free space and rerun the same command to resume from it"), errors
    after = ckpt_files(run)
    assert {n: after[n] for n in before} == before
    assert sorted(n for n in after if n.endswith(".index")) == ["ckpt-3.index", "ckpt-6.index"]


def test_disk_full_in_export_is_one_line(trained, tmp_path):
    res = subprocess.run(script("pretrain.conversion.export", "--model-dir", str(trained), "--output-dir",
                                str(tmp_path / "hf")),
                         env=PYTHON_ENV, capture_output=True, text=True, timeout=180, preexec_fn=limited(0.02))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: disk full"), errors
    assert not (tmp_path / "hf").exists() and os.listdir(tmp_path) == []  # no staging folder left


def test_exporting_a_checkpoint_twice_gives_the_same_bytes(capsys, trained, tmp_path):
    for out in ("a", "b"):
        assert export(capsys, trained, tmp_path / out)[:2] == (0, [])
    for part in ("discriminator", "generator"):
        a, b = ((tmp_path / out / part / "model.safetensors").read_bytes() for out in ("a", "b"))
        assert a == b
        size = int.from_bytes(a[:8], "little")
        metadata = json.loads(a[8:8 + size])["__metadata__"]
        assert list(metadata) == sorted(metadata) == ["electra_part", "format", "step"]


@pytest.mark.slow
def test_export_beside_a_training_that_keeps_one_checkpoint(capsys, data_dir, tmp_path):
    """The reported case, for real: keep_checkpoint_max 1, a save every step; every export works, quietly."""
    model = data_dir / "models" / "keepone"
    train = subprocess.Popen(script("pretrain.training.run", "--data-dir", str(data_dir), "--model-name", "keepone",
                                    "--hparams", hp(num_train_steps=100000, save_checkpoints_steps=1,
                                                    iterations_per_loop=1, keep_checkpoint_max=1)),
                             env=PYTHON_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(model.glob("ckpt-*.index")):
            assert train.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        for i in range(3):
            code, errors, err = export(capsys, model, tmp_path / f"hf{i}")
            assert (code, errors) == (0, []), err
            assert "damaged" not in err and "remove them" not in err and "WARNING" not in err, err
    finally:
        train.send_signal(signal.SIGTERM)
        train.wait(timeout=120)
