"""The record schema: hand-made proto/TFRecord bytes read by TensorFlow, and the shared checks."""
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data_prep import records
from foundation.errors import UserError

L = 8
ROWS = [
    ([2, 31999, 7000, 3, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]),
    ([2, 128, 3, 4, 3, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0, 0]),
    ([2, 5, 6, 7, 8, 9, 10, 3], [1] * 8, [0] * 8),
]


def _write_dir(directory, rows=ROWS, vocab_file=None, num_shards=2, max_seq_length=L):
    directory.mkdir(parents=True, exist_ok=True)
    counts = []
    for i in range(num_shards):
        chunk = rows[i::num_shards]
        path = str(directory / records.shard_name(i, num_shards))
        counts.append(records.write_shard(path, (records.encode_example(*r) for r in chunk)))
    if vocab_file is not None:
        records.write_manifest(
            str(directory),
            records.Manifest(
                max_seq_length=max_seq_length,
                vocab_size=32200,
                vocab_sha256=records.file_sha256(str(vocab_file)),
                num_shards=num_shards,
                examples_per_shard=tuple(counts),
                num_tokens=sum(sum(r[1]) for r in rows),
                seed=0,
                flags={},
            ),
        )
    return str(directory)


@pytest.mark.parametrize("ids", [ROWS[1][0], [2, 70000, 1 << 40, 3, 0, 0, 0, 0]])
def test_encoded_example_is_what_tensorflow_builds(ids):
    mask, seg = ROWS[1][1:]
    ours = tf.train.Example.FromString(records.encode_example(ids, mask, seg))
    want = tf.train.Example(
        features=tf.train.Features(
            feature={
                name: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
                for name, v in zip(records.FEATURES, (ids, mask, seg))
            }
        )
    )
    assert ours == want
    assert records.encode_example(ids, mask, seg) == records.encode_example(ids, mask, seg)  # deterministic


def test_shards_read_by_tf_data_and_parse_example(tmp_path):
    d = _write_dir(tmp_path / "rec")
    ds = tf.data.TFRecordDataset(records.list_shards(d)).map(lambda s: records.parse_example(s, L))
    got = [tuple(ex[name].numpy().tolist() for name in records.FEATURES) for ex in ds]
    assert got == [ROWS[0], ROWS[2], ROWS[1]]  # shard 0 holds rows 0 and 2
    assert all(ex["input_ids"].dtype == tf.int32 for ex in ds.take(1))
    batch = records.parse_example(tf.constant([records.encode_example(*r) for r in ROWS]), L)
    np.testing.assert_array_equal(batch["segment_ids"].numpy(), np.array([r[2] for r in ROWS]))


def test_load_examples_and_check_with_manifest(tmp_path, koelectra_vocab):
    d = _write_dir(tmp_path / "rec", vocab_file=koelectra_vocab)
    loaded = records.load_examples(d)
    assert loaded["input_ids"].shape == (3, L) and loaded["input_ids"][0, 2] == 7000
    manifest = records.check_record_dir(d, L, str(koelectra_vocab), 32200, full=True)
    assert manifest.num_examples == 3 and manifest.examples_per_shard == (2, 1)


def test_check_without_manifest_reads_original_style_data(tmp_path):
    d = _write_dir(tmp_path / "rec")
    assert records.check_record_dir(d, L) is None
    with pytest.raises(UserError, match=r"record 0 has feature lengths .* expected 16 \(max_seq_length\)"):
        records.check_record_dir(d, 16)


def test_check_refuses_mismatches(tmp_path, koelectra_vocab):
    d = _write_dir(tmp_path / "rec", vocab_file=koelectra_vocab)
    with pytest.raises(UserError, match="records have max_seq_length 8, expected 128"):
        records.check_record_dir(d, 128)
    with pytest.raises(UserError, match="vocab size 32200, expected 30000"):
        records.check_record_dir(d, vocab_size=30000)
    other = tmp_path / "other_vocab.txt"
    other.write_text(koelectra_vocab.read_text() + "새토큰\n")
    with pytest.raises(UserError, match="another vocab than .*other_vocab.txt"):
        records.check_record_dir(d, vocab_file=str(other))
    big = [([2, 70000, 3, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0], [0] * 8)]
    with pytest.raises(UserError, match="token id 70000 >= vocab size 32200"):
        records.check_record_dir(_write_dir(tmp_path / "raw", big, num_shards=1), vocab_size=32200)
    (tmp_path / "rec" / records.shard_name(1, 2)).unlink()
    with pytest.raises(UserError, match="incomplete"):
        records.check_record_dir(d)


def test_corrupt_record_is_a_clear_error(tmp_path):
    d = _write_dir(tmp_path / "rec", num_shards=1)
    path = tmp_path / "rec" / records.shard_name(0, 1)
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF  # inside record 0's payload
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"corrupt record 0 in .*tfrecord-0-of-1: truncated or bad checksum"):
        records.check_record_dir(d)
    with pytest.raises(tf.errors.DataLossError):  # what TF alone would say, deep in the input pipeline
        list(tf.data.TFRecordDataset(str(path)))
    shutil.rmtree(d)
    d = _write_dir(tmp_path / "rec", num_shards=1)
    path.write_bytes(path.read_bytes()[:-5])  # truncated last record
    with pytest.raises(UserError, match="corrupt record 2"):
        records.check_record_dir(d, full=True)


def test_missing_directory_and_no_shards(tmp_path):
    with pytest.raises(UserError, match="record directory not found"):
        records.list_shards(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no pretrain_data.tfrecord-I-of-N files"):
        records.list_shards(str(tmp_path))
