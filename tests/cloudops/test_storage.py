"""cloudops.storage against a real local Cloud Storage emulator (gcp-storage-emulator)."""
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

from cloudops import storage
from data_prep import records
from foundation.errors import UserError

KiB = 1024


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, corpus_path, koelectra_vocab) -> pathlib.Path:
    """A small built dataset: real TFRecord shards of corpus lines, its manifest, and the vocab."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("dataset")
    (out / "pretrain_tfrecords").mkdir()
    lines = [ln for ln in corpus_path.read_bytes().split(b"\n") if ln][:300]
    seq = 64
    counts = []
    for shard in range(3):
        mine = lines[shard::3]
        with tf.io.TFRecordWriter(str(out / "pretrain_tfrecords" / records.shard_name(shard, 3))) as w:
            for line in mine:
                ids = list(line[:seq]) + [0] * (seq - len(line[:seq]))
                mask = [1] * min(len(line), seq) + [0] * (seq - min(len(line), seq))
                feats = {"input_ids": ids, "input_mask": mask, "segment_ids": [0] * seq}
                example = tf.train.Example(features=tf.train.Features(feature={
                    k: tf.train.Feature(int64_list=tf.train.Int64List(value=v)) for k, v in feats.items()}))
                w.write(example.SerializeToString())
        counts.append(len(mine))
    records.write_manifest(str(out / "pretrain_tfrecords"), records.Manifest(
        max_seq_length=seq, vocab_size=256, vocab_sha256="0" * 64, num_shards=3,
        examples_per_shard=tuple(counts), num_tokens=0, seed=0, flags={}))
    (out / "vocab").mkdir()
    (out / "vocab" / "vocab.txt").write_bytes(koelectra_vocab.read_bytes())
    return out


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_parse_uri():
    assert storage.parse_uri("gs://b/run/records/") == storage.GcsUri("b", "run/records")
    assert str(storage.parse_uri("gs://b")) == "gs://b"
    assert storage.parse_uri("gs://b/x").child("y/z") == storage.GcsUri("b", "x/y/z")
    with pytest.raises(UserError, match="not a gs:// path: records/x"):
        storage.parse_uri("records/x")
    with pytest.raises(UserError, match="no bucket name in gs:///x"):
        storage.parse_uri("gs:///x")


def test_local_files_leave_out_unfinished_atomic_writes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_bytes(b"1")
    (tmp_path / "y.txt.tmp-0123abcd").write_bytes(b"partial")
    assert storage.local_files(str(tmp_path)) == [(str(tmp_path / "a" / "x.txt"), "a/x.txt")]
    with pytest.raises(UserError, match="nothing to upload: .*missing does not exist"):
        storage.local_files(str(tmp_path / "missing"))


def test_upload_download_roundtrip_same_bytes(store, bucket, dataset_dir, tmp_path):
    uri = storage.parse_uri(f"gs://{bucket}/run1")
    expected = _tree(dataset_dir)
    up = storage.upload(store, str(dataset_dir), uri, workers=4)
    assert up == storage.TransferSummary(copied=5, skipped=0, bytes=sum(map(len, expected.values())))
    names = [o.name for o in storage.list_objects(store, uri)]
    assert names == sorted(f"run1/{rel}" for rel in expected)

    down = storage.download(store, uri, str(tmp_path / "copy"), workers=4)
    assert down.copied == 5 and down.skipped == 0
    assert _tree(tmp_path / "copy") == expected
    # The downloaded shards are still readable TFRecords with the manifest's counts.
    manifest = records.read_manifest(str(tmp_path / "copy" / "pretrain_tfrecords"))
    assert manifest.examples_per_shard == (100, 100, 100)


def test_rerun_skips_identical_and_sends_only_changed(store, bucket, dataset_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for rel, data in _tree(dataset_dir).items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    uri = storage.parse_uri(f"gs://{bucket}/run2")
    storage.upload(store, str(src), uri)
    assert storage.upload(store, str(src), uri) == storage.TransferSummary(copied=0, skipped=5, bytes=0)

    # Same size, different bytes: the CRC32C, not the size, tells them apart.
    vocab = src / "vocab" / "vocab.txt"
    data = bytearray(vocab.read_bytes())
    data[10] ^= 1
    vocab.write_bytes(bytes(data))
    assert storage.upload(store, str(src), uri) == storage.TransferSummary(copied=1, skipped=4, bytes=len(data))
    assert store.client.bucket(bucket).blob("run2/vocab/vocab.txt").download_as_bytes() == bytes(data)

    storage.download(store, uri, str(tmp_path / "dst"))
    assert storage.download(store, uri, str(tmp_path / "dst")).skipped == 5


def test_large_file_goes_up_in_chunks_and_arrives_whole(store, bucket, tmp_path):
    """Above the library's 8 MiB multipart limit a file takes the chunked resumable upload."""
    big = tmp_path / "big" / "shard.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(8 * 1024 * KiB + 300 * KiB))
    uri = storage.parse_uri(f"gs://{bucket}/run3")
    assert storage.upload(store, str(big.parent), uri, chunk_size=1024 * KiB) == storage.TransferSummary(
        copied=1, skipped=0, bytes=big.stat().st_size)
    remote = storage.list_objects(store, uri)
    assert [(o.name, o.size) for o in remote] == [("run3/shard.bin", big.stat().st_size)]
    assert remote[0].crc32c == storage.file_checksums(str(big))[0]
    assert store.client.bucket(bucket).blob("run3/shard.bin").download_as_bytes() == big.read_bytes()


def test_rerun_after_a_partial_upload_sends_only_the_missing_files(store, bucket, dataset_dir):
    uri = storage.parse_uri(f"gs://{bucket}/run4")
    storage.upload(store, str(dataset_dir), uri)
    # as if the first run had been killed before two shards arrived
    for name in ("pretrain_tfrecords/" + records.shard_name(1, 3), "pretrain_tfrecords/" + records.shard_name(2, 3)):
        store.client.bucket(bucket).blob(f"run4/{name}").delete()
    missing = sum((dataset_dir / "pretrain_tfrecords" / records.shard_name(i, 3)).stat().st_size for i in (1, 2))
    assert storage.upload(store, str(dataset_dir), uri) == storage.TransferSummary(copied=2, skipped=3, bytes=missing)


def test_unreachable_storage_is_one_line(monkeypatch, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on: every connection is refused
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{sock.getsockname()[1]}")
    dead = storage.connect(retry_seconds=1)
    (tmp_path / "x.txt").write_bytes(b"x")
    with pytest.raises(UserError, match=r"^Cloud Storage unreachable for gs://b/run \(ConnectionError\): "
                                        r"check the network, then run the same command again "
                                        r"\(files already transferred are skipped\)$"):
        storage.upload(dead, str(tmp_path), storage.parse_uri("gs://b/run"))


def test_missing_bucket_is_one_clear_line(store, emulator_host, tmp_path):
    (tmp_path / "x.txt").write_bytes(b"x")
    with pytest.raises(UserError, match=r"bucket gs://no-such-bucket does not exist: create it with "
                                        r"`gcloud storage buckets create gs://no-such-bucket --location=REGION`"):
        storage.upload(store, str(tmp_path), storage.parse_uri("gs://no-such-bucket/run"))

    env = dict(os.environ, STORAGE_EMULATOR_HOST=emulator_host)
    proc = subprocess.run([sys.executable, "-m", "cloudops.storage", "ls", "gs://no-such-bucket/run"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: bucket gs://no-such-bucket does not exist")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_credentials_fail_before_any_transfer(monkeypatch, tmp_path):
    for var in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud login here
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # and not on a GCE/TPU VM
    with pytest.raises(UserError, match=r"no Google Cloud credentials found: run `gcloud auth application-default login`"):
        storage.connect()


@pytest.mark.parametrize("content, problem", [
    (None, r"GOOGLE_APPLICATION_CREDENTIALS names {key}, which is not a file: "
           r"point it at a service-account JSON key"),
    ("{oops", r"the key file {key} \(GOOGLE_APPLICATION_CREDENTIALS\) is not usable: File {key} is not a valid json "
              r"file: Expecting property name enclosed in double quotes: line 1 column 2 \(char 1\); "
              r"download a new JSON key"),
    (json.dumps({"type": "service_account"}),
     r"the key file {key} \(GOOGLE_APPLICATION_CREDENTIALS\) is not usable: Failed to load service account credentials "
     r"from {key}: Service account info was not in the expected format, missing fields "),
])
def test_a_bad_key_file_is_named_with_what_is_wrong(monkeypatch, tmp_path, content, problem):
    key = tmp_path / "key.json"
    if content is not None:
        key.write_text(content)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    with pytest.raises(UserError, match="^" + problem.format(key=re.escape(str(key)))) as exc:
        storage.connect()
    assert "\n" not in str(exc.value) and "no Google Cloud credentials found" not in str(exc.value)


def test_electra_gcs_with_a_malformed_key_file_is_one_line_naming_it(tmp_path):
    key = tmp_path / "key.json"
    key.write_text("{oops")
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    proc = subprocess.run([sys.executable, "-m", "cloudops.storage", "ls", "gs://b/run"], capture_output=True,
                          text=True, timeout=60, env=dict(env, GOOGLE_APPLICATION_CREDENTIALS=str(key)))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: the key file {key} (GOOGLE_APPLICATION_CREDENTIALS) is not usable: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_upload_ls_download(emulator_host, store, bucket, dataset_dir, tmp_path):
    env = dict(os.environ, STORAGE_EMULATOR_HOST=emulator_host)
    run = lambda *a: subprocess.run([sys.executable, "-m", "cloudops.storage", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    up = run("upload", str(dataset_dir / "vocab"), f"gs://{bucket}/cli/vocab")
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines()[-1].startswith(f"uploaded 1 files (0.2 MiB), skipped 0 identical: gs://{bucket}/cli/vocab")
    ls = run("ls", f"gs://{bucket}/cli")
    assert f"gs://{bucket}/cli/vocab/vocab.txt" in ls.stdout
    assert ls.stdout.splitlines()[-1] == f"gs://{bucket}/cli: 1 objects, 0.2 MiB"
    down = run("download", f"gs://{bucket}/cli", str(tmp_path / "d"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "d" / "vocab" / "vocab.txt").read_bytes() == (dataset_dir / "vocab" / "vocab.txt").read_bytes()
