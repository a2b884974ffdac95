"""electra-doctor: the pure checks on hand-made cases, then the whole run on a real GCS emulator."""
import os
import re
import subprocess
import sys

import pytest

from cloudops import doctor, storage
from data_prep import records
from foundation.errors import UserError
from pretrain.config import from_hparams
from tpu_metadata import metadata_server, nothing_listening, tpu_vm


@pytest.fixture(scope="module")
def small(root):
    """The real configs/small.json: max_seq_length 512, 8 TPU cores; vocab_size left to the data (default 32200)."""
    return from_hparams(str(root / "configs" / "small.json"))


def manifest(max_seq_length: int, vocab_size: int) -> records.Manifest:
    return records.Manifest(max_seq_length=max_seq_length, vocab_size=vocab_size, vocab_sha256="0" * 64,
                            num_shards=2, examples_per_shard=(3, 2), num_tokens=100, seed=0, flags={})


@pytest.fixture()
def off_a_tpu_vm(monkeypatch):
    """No metadata server answers: the doctor judges the host as worker 0 of --accelerator-type."""
    monkeypatch.setenv("GCE_METADATA_IP", nothing_listening())
    monkeypatch.delenv("TPU_LOAD_LIBRARY", raising=False)


def test_the_doctor_imports_no_tensorflow():
    """`setup_tpu.sh` runs `electra-doctor --versions-only` before TPU_LOAD_LIBRARY is set: importing the
    TPU build of TensorFlow there loads libtpu, which deadlocks without a free TPU."""
    found = subprocess.run([sys.executable, "-c", "import sys, cloudops.doctor; "
                            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"],
                           capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_bad_zone_is_a_user_error():
    with pytest.raises(UserError, match="--zone europe-west4: expected a zone like europe-west4-a"):
        doctor.region_of_zone("europe-west4")


def test_tpu_device_check():
    assert doctor.check_tpu_devices(8, "v3-8") == doctor.Check("tpu", True, "8 TPU cores (v3-8)")
    short = doctor.check_tpu_devices(4, "v3-8")
    assert not short.ok and short.detail.startswith("4 TPU cores visible, v3-8 should show 8 on this host; fix:")
    down = doctor.check_tpu_devices(RuntimeError("TPUs not found in the cluster.\nmore"), "v3-8")
    assert down.line().startswith("FAIL tpu: no TPU reachable (TPUs not found in the cluster.); fix: run this on the TPU VM")
    # through the TPU's name a pod slice shows all its cores, "local" only this host's
    assert doctor.check_tpu_devices(32, "v3-32", "my-pod").line() == "ok   tpu: 32 TPU cores (v3-32)"
    assert doctor.check_tpu_devices(8, "v3-32", "my-pod").line().startswith(
        "FAIL tpu: 8 TPU cores visible, v3-32 should show 32 through TPU 'my-pod'; fix:")


@pytest.mark.parametrize("tpu,cores,accelerator,worker,load,line", [
    ("local", 8, "v3-8", None, None, "ok   tpu client: TPU 'local' (this TPU VM's own)"),
    ("local", 8, "v3-8", 0, None, "ok   tpu client: TPU 'local' (this TPU VM's own)"),
    ("my-pod", 32, "v3-32", 0, "0", "ok   tpu client: TPU 'my-pod': this one client drives all 32 cores of v3-32"),
    # "8 local devices" with "num_tpu_cores": 32 is no longer two ok lines
    ("local", 32, "v3-32", None, "0", "FAIL tpu client: tpu_name 'local' on the multi-host slice v3-32 reaches only "
                                      "this host's 8 of its 32 cores; TensorFlow drives"),
    ("local", 32, "v3-8", 0, None, "FAIL tpu client: num_tpu_cores=32 but tpu_name 'local' reaches only this v3-8 "
                                   "host's 8 TPU cores;"),
    ("my-pod", 32, "v3-32", 2, "0", "FAIL tpu client: this is worker 2 of the multi-host slice v3-32,"),
    ("my-pod", 32, "v3-32", None, None, "FAIL tpu client: TPU_LOAD_LIBRARY is unset on worker 0 of the multi-host"),
])
def test_tpu_client_check(tpu, cores, accelerator, worker, load, line):
    assert doctor.check_tpu_client(tpu, cores, accelerator, worker, load).line().startswith(line)


@pytest.mark.parametrize("location,data_locations,zone,ok", [
    ("EUROPE-WEST4", [], "europe-west4-a", True),
    ("US", [], "us-central1-b", True),  # multi-region that contains the zone's region
    ("US", [], "europe-west4-a", False),
    ("US-CENTRAL1", [], "us-east1-d", False),
    ("EU", [], "europe-west4-a", True),
    ("EUR4", ["EUROPE-NORTH1", "EUROPE-WEST4"], "europe-west4-a", True),  # dual-region
])
def test_bucket_region(location, data_locations, zone, ok):
    check = doctor.check_bucket_region("b", location, data_locations, zone)
    assert check.ok is ok
    if not ok:
        region = zone.rsplit("-", 1)[0]
        assert check.detail == (f"gs://b is in {location} but the TPU is in {region}: every step would read across "
                                f"regions (slower, billed as egress); fix: create a bucket in {region} "
                                f"(scripts/create_bucket.sh) and copy the run there with `gcloud storage cp -r`")


def test_manifest_against_hparams(small):
    assert [c.ok for c in doctor.check_manifest(manifest(512, 32200), small, "gs://b/r")] == [True, True]
    seq, vocab = doctor.check_manifest(manifest(128, 35000), small, "gs://b/r/pretrain_tfrecords")
    assert seq.line() == ("FAIL data max_seq_length: records in gs://b/r/pretrain_tfrecords were built with "
                          "max_seq_length=128, the hparams say 512; fix: set \"max_seq_length\": 128 in the hparams, "
                          "or rebuild the data with 512")
    assert not vocab.ok and 'set "vocab_size": 35000' in vocab.detail
    (none,) = doctor.check_manifest(None, small, "gs://b/r")
    assert none.ok and "not checked" in none.detail


def test_hparams_against_the_accelerator(small):
    assert all(c.ok for c in doctor.check_hparams_for_tpu(small, "v3-8"))
    use_tpu, cores = doctor.check_hparams_for_tpu(small, "v3-32")
    assert use_tpu.ok and cores.line() == ('FAIL hparams num_tpu_cores: 8, but v3-32 has 32 cores; '
                                           'fix: set "num_tpu_cores": 32 in the hparams')
    # v4 names count TensorCores, two per chip (Google's "TPU v4" page); one TensorFlow device per chip is
    # this project's megacore assumption (tpu_host.host_devices), not verified without a v4
    assert doctor.check_hparams_for_tpu(small, "v4-32")[1].detail.startswith("8, but v4-32 has 16 cores;")
    cpu = from_hparams({"model_size": "small", "use_tpu": False})
    assert doctor.check_hparams_for_tpu(cpu, "v3-8")[0].line() == (
        'FAIL hparams use_tpu: false; fix: set "use_tpu": true in the hparams')


def _upload_records(store, bucket, tmp_path, max_seq_length, vocab_size=32200):
    data = tmp_path / "pretrain_tfrecords"
    data.mkdir()
    for i in range(2):
        (data / records.shard_name(i, 2)).write_bytes(b"records")
    records.write_manifest(str(data), manifest(max_seq_length, vocab_size))
    storage.upload(store, str(data), storage.parse_uri(f"gs://{bucket}/run/pretrain_tfrecords"))


def test_run_checks_on_the_emulator(store, bucket, tmp_path, root):
    b = store.client.get_bucket(bucket)
    b.location = "EUROPE-WEST4"  # the emulator keeps what the client sets
    b.patch()
    _upload_records(store, bucket, tmp_path, max_seq_length=128, vocab_size=35000)
    seen = []
    results = doctor.run_checks(f"gs://{bucket}/run", [str(root / "configs" / "small.json")], "electra-small",
                                "europe-west4-a", "v3-8", "none", emit=seen.append)
    assert seen == results
    # first this environment's TensorFlow build and libraries (+ libtpu with the TPU build), all ok
    versions = doctor.check_versions(doctor.installed_dists(), doctor.libtpu_requirement(), on_tpu=False)
    assert results[:len(versions)] == versions and all(c.ok for c in versions)
    results = results[len(versions):]
    lines = [c.line() for c in results]
    assert [c.name for c in results] == [
        "hparams", "credentials", f"access gs://{bucket}/run", f"access gs://{bucket}/run/models/electra-small",
        f"access gs://{bucket}/run/logs", "bucket region", "records", "data max_seq_length", "data vocab_size"]
    assert [c.ok for c in results] == [True] * 7 + [False, True]
    assert lines[6] == f"ok   records: 2 shards in gs://{bucket}/run/pretrain_tfrecords"
    assert lines[7].startswith("FAIL data max_seq_length: records in ")
    # the preset sets max_seq_length (checked) but not vocab_size: that comes from the data, as in the trainer
    assert lines[0].endswith("model_size=small, max_seq_length=512, vocab_size=from the data")
    assert lines[8] == "ok   data vocab_size: 35000 in the records and the hparams"
    layered = doctor.run_checks(f"gs://{bucket}/run", [str(root / "configs" / "small.json"), '{"vocab_size": 32200}'],
                                "electra-small", "europe-west4-a", "v3-8", "none", emit=lambda c: None)
    assert layered[-1].line().startswith("FAIL data vocab_size: records in ")
    # The access probes leave nothing behind.
    assert [o.name for o in storage.list_objects(store, storage.parse_uri(f"gs://{bucket}/run"))] == [
        f"run/pretrain_tfrecords/{n}" for n in ("manifest.json", records.shard_name(0, 2), records.shard_name(1, 2))]


def test_run_checks_missing_bucket(store, root):
    results = doctor.run_checks("gs://no-such-bucket/run", [str(root / "configs" / "small.json")], "m", None,
                                "v3-8", "none", emit=lambda c: None)
    access = [c for c in results if c.name.startswith("access")]
    assert len(access) == 3 and not any(c.ok for c in access)
    assert access[0].detail.startswith("bucket gs://no-such-bucket does not exist: create it with `gcloud storage")
    assert results[-1].line().startswith("FAIL records: bucket gs://no-such-bucket does not exist")


def _tpu_results(results: list) -> list[str]:
    """The lines of the checks after the storage and data ones."""
    first = next(i for i, c in enumerate(results) if c.name == "hparams use_tpu")
    return [c.line() for c in results[first:]]


def test_local_tpu_on_a_pod_slice_fails_without_probing_the_tpu(store, bucket, tmp_path, root, off_a_tpu_vm):
    """The presets' "local" with the slice's 32 cores: refused by the client check; no TPU client is started."""
    _upload_records(store, bucket, tmp_path, max_seq_length=512)
    results = doctor.run_checks(f"gs://{bucket}/run", [str(root / "configs" / "small.json"), '{"num_tpu_cores": 32}'],
                                "m", None, "v3-32", "local", emit=lambda c: None)
    lines = _tpu_results(results)
    assert lines[:2] == ["ok   hparams use_tpu: true", "ok   hparams num_tpu_cores: 32 (v3-32)"]
    assert lines[2].startswith("FAIL tpu client: tpu_name 'local' on the multi-host slice v3-32 reaches only this "
                               "host's 8 of its 32 cores;")
    assert len(lines) == 3  # no "tpu" line: the TPU was not touched


def test_pod_slice_doctor_on_worker_0_and_on_worker_1(store, bucket, tmp_path, root, monkeypatch):
    """What scripts/doctor.sh runs on a v3-32: the train.sh layer, --tpu NAME, TPU_LOAD_LIBRARY=0."""
    _upload_records(store, bucket, tmp_path, max_seq_length=512)
    layers = [str(root / "configs" / "small.json"), '{"tpu_name": "my-pod", "num_tpu_cores": 32}']
    monkeypatch.setenv("TPU_LOAD_LIBRARY", "0")
    with metadata_server(tpu_vm("v3-32", 0)) as address:
        monkeypatch.setenv("GCE_METADATA_IP", address)
        lines = _tpu_results(doctor.run_checks(f"gs://{bucket}/run", layers, "m", None, "v3-32", "my-pod",
                                               emit=lambda c: None))
    assert lines[1:3] == ["ok   hparams num_tpu_cores: 32 (v3-32)",
                          "ok   tpu client: TPU 'my-pod': this one client drives all 32 cores of v3-32"]
    assert lines[3].startswith("FAIL tpu: no TPU reachable (")  # the real resolver, which finds no TPU 'my-pod' here
    with metadata_server(tpu_vm("v3-32", 1)) as address:
        monkeypatch.setenv("GCE_METADATA_IP", address)
        lines = _tpu_results(doctor.run_checks(f"gs://{bucket}/run", layers, "m", None, "v3-32", "my-pod",
                                               emit=lambda c: None))
    assert lines[2].startswith("FAIL tpu client: this is worker 1 of the multi-host slice v3-32,") and len(lines) == 3


def test_cli_on_cpu_reports_the_missing_tpu(emulator_host, store, bucket, tmp_path, root):
    _upload_records(store, bucket, tmp_path, max_seq_length=512)
    env = dict(os.environ, STORAGE_EMULATOR_HOST=emulator_host, GCE_METADATA_IP=nothing_listening())
    proc = subprocess.run(
        [sys.executable, "-m", "cloudops.doctor", "--data-dir", f"gs://{bucket}/run", "--model-name", "m",
         "--hparams", str(root / "configs" / "small.json"), "--accelerator-type", "v3-8", "--tpu", "local"],
        env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stderr
    # first the installed build: the CPU one fails here (`make test`), the TPU one passes (`make test-tpu-env`)
    versions = doctor.check_versions(doctor.installed_dists(), doctor.libtpu_requirement(), on_tpu=True)
    assert lines[:len(versions)] == [c.line() for c in versions]
    (tf,) = [d for d in doctor.installed_dists() if d.name in doctor.TF_BUILDS]
    cpu_build = tf.name != "tensorflow-tpu"
    assert lines[0] == "ok   install path: pip: TensorFlow installed in this venv"
    assert lines[1].startswith(f"FAIL tensorflow: tensorflow {tf.version} cannot drive a TPU" if cpu_build else
                               f"ok   tensorflow: tensorflow-tpu {tf.version}, the only TensorFlow build")
    assert lines[-3] == "ok   tpu client: TPU 'local' (this TPU VM's own)"
    assert lines[-2].startswith("FAIL tpu: no TPU reachable (")  # the real TF TPU resolver, on a CPU machine
    assert lines[-1] == f"{len(lines) - 1} checks, {1 + cpu_build} failed"
    assert all(line.startswith("ok ") for line in lines[len(versions):-2])


def test_cli_without_credentials(tmp_path, root):
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(CLOUDSDK_CONFIG=str(tmp_path), NO_GCE_CHECK="True")
    proc = subprocess.run(
        [sys.executable, "-m", "cloudops.doctor", "--data-dir", "gs://b/run", "--model-name", "m",
         "--hparams", str(root / "configs" / "small.json")],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    versions = len(doctor.check_versions(doctor.installed_dists(), doctor.libtpu_requirement(), on_tpu=False))
    assert [line.split(":")[0] for line in lines[versions:-1]] == ["ok   hparams", "FAIL credentials"]
    assert lines[versions + 1].startswith(
        "FAIL credentials: no Google Cloud credentials found: run `gcloud auth application-default login`")
    assert lines[-1] == f"{versions + 2} checks, 1 failed"


Dist = doctor.Dist
# The pip path: tensorflow-tpu from PyPI with its pinned libtpu, in the venv.
TPU_VM = {"tensorflow-tpu": "2.19.1", "tensorflow-text": "2.19.0", "keras": "3.9.2", "libtpu": "0.0.10"}


def dists(versions: dict, image: tuple = ()) -> list:
    return [Dist(name, version, name in image) for name, version in versions.items() if version is not None]


def test_versions_of_a_tpu_vm_install():
    assert [c.line() for c in doctor.check_versions(dists(TPU_VM), "libtpu==0.0.10", on_tpu=True)] == [
        "ok   install path: pip: TensorFlow installed in this venv",
        "ok   tensorflow: tensorflow-tpu 2.19.1, the only TensorFlow build",
        "ok   tensorflow-text: 2.19.0, matches TensorFlow 2.19",
        "ok   keras: 3.9.2",
        "ok   libtpu: 0.0.10, as tensorflow-tpu 2.19.1 requires (libtpu==0.0.10)",
    ]


@pytest.mark.parametrize("tf_name, libtpu, line, both", [
    ("tensorflow", None, "ok   libtpu: the image's own (no pip package: its version shows only when the TPU starts)",
     "tensorflow 2.18.0 (the image's), tensorflow 2.21.0"),
    ("tensorflow-tpu", "0.0.4", "ok   libtpu: 0.0.4, as tensorflow-tpu 2.18.0 requires (libtpu==0.0.4)",
     "tensorflow 2.21.0, tensorflow-tpu 2.18.0 (the image's)"),
])
def test_versions_on_a_tensorflow_image(tf_name, libtpu, line, both):
    """Google's tpu-vm-tf-2.18.0 image: its TensorFlow and libtpu in the system Python (whatever the build's
    name), the project's venv sees them; tensorflow-text 2.18 was added to the venv with --no-deps."""
    image = {tf_name: "2.18.0", "keras": "3.6.0", "libtpu": libtpu}
    found = dists(image | {"tensorflow-text": "2.18.1"}, image=tuple(image))
    assert [c.line() for c in doctor.check_versions(found, "libtpu==0.0.4", on_tpu=True)] == [
        "ok   install path: image: TensorFlow and libtpu as the TPU image installed them",
        f"ok   tensorflow: {tf_name} 2.18.0 (the image's), the only TensorFlow build",
        "ok   tensorflow-text: 2.18.1, matches TensorFlow 2.18",
        "ok   keras: 3.6.0",
        line,
    ]
    # a pip install of the CPU build over the image's TensorFlow: two builds, the venv's named to remove
    twice = [*found, Dist("tensorflow", "2.21.0")]
    assert [c.line() for c in doctor.check_versions(twice, None, on_tpu=True)] == [
        f"FAIL tensorflow: 2 TensorFlow builds installed ({both}): they "
        "overwrite or shadow each other; fix: pip uninstall -y tensorflow, then scripts/setup_tpu.sh"]


FIX_KERAS = "fix: pip install 'keras==3.6.0' (tested with TensorFlow 2.18) or 'keras>=3.8,<4'"


@pytest.mark.parametrize("change, line", [
    ({"tensorflow": "2.19.0"}, "FAIL tensorflow: 2 TensorFlow builds installed (tensorflow 2.19.0, tensorflow-tpu "
                               "2.19.1): they overwrite or shadow each other; fix: pip uninstall -y tensorflow "
                               "tensorflow-tpu, then scripts/setup_tpu.sh"),
    ({"tensorflow-tpu": None, "tensorflow": "2.21.0"},
     "FAIL tensorflow: tensorflow 2.21.0 cannot drive a TPU; fix: pip uninstall -y tensorflow, then "
     "scripts/setup_tpu.sh (the image's TensorFlow or tensorflow-tpu)"),
    ({"tensorflow-tpu": "2.17.1"}, "FAIL tensorflow: tensorflow-tpu 2.17.1 is not a supported version "
                                   "(2.18, 2.19, 2.20, 2.21); fix: scripts/setup_tpu.sh"),
    ({"tensorflow-text": "2.21.1"}, "FAIL tensorflow-text: tensorflow-text 2.21.1 is built for TensorFlow 2.21, "
                                    "TensorFlow is 2.19.1; fix: pip install --no-deps 'tensorflow-text==2.19.*'"),
    ({"libtpu": "0.0.14"}, "FAIL libtpu: 0.0.14, tensorflow-tpu 2.19.1 requires libtpu==0.0.10; fix: "
                           "scripts/setup_tpu.sh (the `tpu` extra pins the tested libtpu)"),
    ({"libtpu": None}, "FAIL libtpu: not installed, tensorflow-tpu 2.19.1 requires libtpu==0.0.10; fix: "
                       "scripts/setup_tpu.sh (the `tpu` extra pins the tested libtpu)"),
    ({"keras": "2.15.0"}, f"FAIL keras: 2.15.0, the model needs Keras 3; {FIX_KERAS}"),
    ({"keras": "3.5.0"}, f"FAIL keras: 3.5.0 is older than the oldest tested Keras 3.6; {FIX_KERAS}"),
    ({"keras": "3.7.0"}, "FAIL keras: 3.7.0 makes Keras variables MEAN-aggregated by default, and TensorFlow refuses a "
                         "distributed non-float variable with MEAN aggregation ('creating distributed tf.Variable "
                         "with aggregation=MEAN and a non-floating dtype is not supported'): keras issue 20700, on a "
                         f"TPU; fixed in 3.8; {FIX_KERAS}"),
])
def test_mismatched_versions_are_named_with_the_fix(change, line):
    failed = [c.line() for c in doctor.check_versions(dists(TPU_VM | change), "libtpu==0.0.10", on_tpu=True)
              if not c.ok]
    assert failed == [line]


def test_versions_only_cli_reads_this_environment():
    proc = subprocess.run([sys.executable, "-m", "cloudops.doctor", "--versions-only"], capture_output=True,
                          text=True, timeout=120)
    (tf,) = [d for d in doctor.installed_dists() if d.name in doctor.TF_BUILDS]
    assert proc.stdout.splitlines()[:2] == ["ok   install path: pip: TensorFlow installed in this venv",
                                            f"ok   tensorflow: {tf.name} {tf.version}, the only TensorFlow build"]
    libtpu = tf.name == "tensorflow-tpu"
    assert proc.stdout.splitlines()[-1] == f"{4 + libtpu} checks, 0 failed" and proc.returncode == 0


def test_a_tensorflow_outside_the_venv_is_the_images(tmp_path):
    """What a venv made with --system-site-packages sees on a TPU image: a TensorFlow installed outside the
    venv (here: a distribution's metadata on PYTHONPATH) is labelled the image's, and counts as a second build."""
    info = tmp_path / "tf_nightly-2.18.0.dist-info"  # the name early TPU VM images installed TensorFlow under
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tf-nightly\nVersion: 2.18.0\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "cloudops.doctor", "--versions-only"], capture_output=True,
                          text=True, timeout=120, env=env)
    (tf,) = [d for d in doctor.installed_dists() if d.name in doctor.TF_BUILDS]
    assert proc.stdout.splitlines() == [
        f"FAIL tensorflow: 2 TensorFlow builds installed ({tf.name} {tf.version}, tf-nightly 2.18.0 (the "
        f"image's)): they overwrite or shadow each other; fix: pip uninstall -y {tf.name}, then pip install -e "
        ".[cpu] (or .[gpu])", "1 checks, 1 failed"]


def test_smoke_cli_on_the_cpu_stand_in():
    """`electra-doctor --smoke`: the versions, then the bfloat16 matmul and the all-reduce that a TPU VM runs
    under TPUStrategy, here on its CPU stand-in (MirroredStrategy over 2 logical CPUs)."""
    proc = subprocess.run([sys.executable, "-m", "cloudops.doctor", "--smoke"], capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert lines[-3].startswith("ok   bfloat16 matmul: [128, 128] @ [128, 128] on 2 of 2 replicas: [128.0] "
                                "(expected [128.0]), compiled and run in ")
    assert lines[-2:] == ["ok   all-reduce: sum of 1..2 over the 2 replicas: [3.0] on each (expected [3.0])",
                          f"{len(lines) - 1} checks, 0 failed"]


def test_smoke_test_fails_with_one_line_where_the_step_cannot_run():
    """A strategy on a device that does not exist: the compile or the run fails, and that is the finding."""
    import tensorflow as tf

    (check,) = doctor.smoke_test(tf.distribute.OneDeviceStrategy("/job:nowhere/device:TPU:0"))
    assert check.line().startswith("FAIL smoke test: a bfloat16 matmul and an all-reduce on 1 replicas failed (")


def test_every_supported_minor_is_tested_on_the_cpu(root):
    """SUPPORTED_TF is what `make test` (requirements/cpu.txt) and the matrix (TF_MINORS, requirements/tfX.Y.txt,
    each pinning that TensorFlow and a Keras the doctor accepts) install, no more, no less."""
    minors = re.search(r"^TF_MINORS := (.*)$", (root / "Makefile").read_text(), re.M).group(1).split()
    assert sorted(minors) == sorted(p.name[2:-len(".txt")] for p in (root / "requirements").glob("tf*.txt"))
    newest = re.search(r"^tensorflow==(\d+\.\d+)\.\*$", (root / "requirements" / "cpu.txt").read_text(), re.M).group(1)
    assert (*minors, newest) == doctor.SUPPORTED_TF
    for minor in minors:
        text = (root / "requirements" / f"tf{minor}.txt").read_text()
        assert re.search(rf"^tensorflow=={re.escape(minor)}\.\d+$", text, re.M)
        assert re.search(rf"^tensorflow-text=={re.escape(minor)}\.\d+$", text, re.M)
        keras = re.search(r"^keras==(\S+)$", text, re.M).group(1)
        assert doctor._keras_check(keras).ok, keras

