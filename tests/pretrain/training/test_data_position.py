"""The seekable input position: a resume at example K reads the stream an uninterrupted run
would have read from K on, and reads less than one shard + the shuffle buffer to get there.

Real TFRecords whose records say where they come from (input_ids [CLS] 10+shard 100+index
[SEP]), real tf.data, a real MirroredStrategy on two logical CPUs.
"""
import time

import numpy as np
import pytest

from pretrain.training.distribute import set_logical_cpu_devices

set_logical_cpu_devices(2)  # before TensorFlow creates its devices

import tensorflow as tf  # noqa: E402

from data_prep import records  # noqa: E402
from foundation.errors import UserError  # noqa: E402
from pretrain.training import data  # noqa: E402

LENGTH = 8
SEED = 3
COUNTS = (7, 0, 12, 5)  # one empty shard; an epoch is 24 examples


def write_shards(directory, counts) -> list[str]:
    """Shard s holds counts[s] records; record i of it has input_ids [2, 10+s, 100+i, 3, 0...]."""
    paths = []
    for s, n in enumerate(counts):
        path = str(directory / records.shard_name(s, len(counts)))
        records.write_shard(path, (records.encode_example([2, 10 + s, 100 + i, 3] + [0] * (LENGTH - 4),
                                                          [1] * 4 + [0] * (LENGTH - 4), [0] * LENGTH)
                                   for i in range(n)))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("position"), COUNTS)


def dataset(files, skip, *, window, batch=1, counts=COUNTS, context=None):
    return data.train_dataset(files, max_seq_length=LENGTH, batch_size=batch, seed=SEED, shuffle_buffer=2 * window,
                              vocab_size=1000, examples_per_shard=counts, skip_examples=skip, input_context=context)


def origins(ds, n_batches) -> list[tuple[int, int]]:
    """(shard, record index) of every example of the first `n_batches` batches, in order."""
    return [(int(r[1]) - 10, int(r[2]) - 100) for b in ds.take(n_batches) for r in b["input_ids"].numpy()]


def start_of(k, window, counts=COUNTS):
    kept = [n for n in counts if n]
    return data.seek(kept, k, window, lambda e: data.file_order(len(kept), SEED, e).numpy())


# K and window: what each case is, checked against `seek` so a change of seed cannot hollow it out.
CASES = {
    "at 0": (0, 8, lambda s: s.window == 0 and s.skip_in_window == 0),
    "inside the first window": (3, 8, lambda s: s.window == 0 and s.skip_in_window == 3),
    "at a window boundary": (8, 8, lambda s: s.window == 1 and s.skip_in_window == 0),
    "inside the second shard": (10, 8, lambda s: s.first_file == 1 and s.skip_in_file > 0),
    "a window across an epoch boundary": (22, 5, lambda s: s.window * 5 < 24 < (s.window + 1) * 5),
    "two epochs on": (53, 5, lambda s: s.epoch == 2),
    "a window larger than an epoch": (30, 40, lambda s: s.epoch == 0 and s.skip_in_window == 30),
}


@pytest.mark.parametrize("case", CASES)
def test_the_stream_from_k_is_the_tail_of_the_stream_from_0(files, case):
    k, window, is_the_case = CASES[case]
    assert is_the_case(start_of(k, window)), start_of(k, window)
    fresh = origins(dataset(files, 0, window=window), 120)
    assert origins(dataset(files, k, window=window), 120 - k) == fresh[k:]
    # 120 examples are whole windows and 5 epochs: every record 5 times, none of the empty shard
    assert sorted(fresh) == sorted((s, i) for s, n in enumerate(COUNTS) for i in range(n) for _ in range(5))


def test_batches_across_windows_and_epochs_resume_whole(files):
    """Batches of 3 out of windows of 5 in epochs of 24: resuming at step 9 (example 27) gives step 10 on."""
    fresh = origins(dataset(files, 0, window=5, batch=3), 30)
    # endless, and known to be: several workers would otherwise get batches of a dynamic size
    assert dataset(files, 0, window=5, batch=3).cardinality() == tf.data.INFINITE_CARDINALITY
    assert origins(dataset(files, 27, window=5, batch=3), 21) == fresh[27:]
    assert fresh != origins(dataset(files, 0, window=1, batch=3), 30)  # the windows do shuffle
    assert sorted(fresh[:24]) != fresh[:24]


def test_every_input_pipeline_resumes_its_own_shards(files):
    """Two pipelines (hosts): pipeline 1 owns shards 1 (empty) and 3, pipeline 0 shards 0 and 2."""
    for pid, owned in ((0, {0, 2}), (1, {3})):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid, num_replicas_in_sync=2)
        fresh = origins(dataset(files, 0, window=4, batch=2, context=ctx), 20)
        assert {s for s, _ in fresh} == owned
        assert origins(dataset(files, 6, window=4, batch=2, context=ctx), 17) == fresh[6:]


def test_a_mirrored_strategy_on_two_cpus_resumes_each_replica(files):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def replica_batches(skip, steps):
        dist = data.distributed(strategy, lambda b, ctx: dataset(files, skip, window=8, batch=b, context=ctx), 4)
        out = []
        for batch, _ in zip(dist, range(steps)):
            out.append([v.numpy()[:, 1:3].tolist() for v in strategy.experimental_local_results(batch["input_ids"])])
        return out

    fresh = replica_batches(0, 8)
    assert all(len(step) == 2 and len(step[0]) == 2 for step in fresh)  # 2 replicas x 2 examples
    assert replica_batches(3 * 4, 5) == fresh[3:]  # resumed at step 3 of a global batch of 4


def test_no_records_for_a_pipeline_is_one_clear_error(files):
    ctx = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=1, num_replicas_in_sync=4)
    with pytest.raises(UserError, match=r"^input pipeline 1 of 4 gets no records: .* --num-shards a multiple of 4$"):
        dataset(files, 0, window=4, context=ctx)
    with pytest.raises(UserError, match="4 shards but 3 record counts in the manifest"):
        dataset(files, 0, window=4, counts=(1, 2, 3))


def test_records_without_counts_are_counted_once(files, caplog):
    """Data from the original tool has no manifest: the counts are read, the stream is the same."""
    import logging

    with caplog.at_level(logging.WARNING):
        counted = origins(dataset(files, 10, window=8, counts=None), 20)
    assert counted == origins(dataset(files, 10, window=8), 20)
    assert "counted the 24 records of 4 shard(s) by reading them through" in caplog.text


def test_a_damaged_shard_met_while_counting_is_named(tmp_path):
    paths = write_shards(tmp_path, (3, 4))
    with open(paths[1], "r+b") as fh:
        fh.truncate(fh.seek(0, 2) - 5)
    with pytest.raises(UserError, match=rf"^corrupt record 3 in {paths[1]}: .*; rebuild the records"):
        dataset(paths, 0, window=4, counts=None)


@pytest.fixture
def records_read(monkeypatch):
    """Count every record TF's TFRecord reader yields (skipped ones included): `len(read)`."""
    real, read = tf.data.TFRecordDataset, []

    def counting(*args, **kwargs):
        def tick(record):
            n = tf.py_function(lambda: read.append(1) or 0, [], tf.int32)
            with tf.control_dependencies([n]):
                return tf.identity(record)

        return real(*args, **kwargs).map(tick)

    monkeypatch.setattr(tf.data, "TFRecordDataset", counting)
    return read


def test_a_resume_reads_at_most_a_shard_and_three_windows_not_the_skipped_records(tmp_path, records_read):
    """Resume at example 530 of 6 shards x 40 records (epoch 3): by the first batch and its read-ahead,
    the records read are the start of one shard + the shuffle buffer (its window + the window read
    ahead) + at most one more window, not the 530 skipped (the old `ds.skip` read and parsed every one).
    The extra window: the batches' own prefetch can drain the window in use, so the prefetched window
    moves up and the next starts (measured 71-105 against this bound of 128; 105 broke the old one, 104)."""
    counts = (40,) * 6
    files = write_shards(tmp_path, counts)
    window, resume = 32, 530
    assert start_of(resume, window, counts).skip_in_file == 32  # the window starts inside a shard
    first = next(iter(dataset(files, resume, window=window, counts=counts)))["input_ids"].numpy()
    time.sleep(1.0)  # let the pipeline's read-ahead run: it counts too
    read = len(records_read)
    print(f"records read by the first batch and its read-ahead: {read}")
    assert window <= read <= max(counts) + 3 * window, read  # one shard + shuffle_buffer + the read-ahead
    records_read.clear()
    fresh = dataset(files, 0, window=window, counts=counts).unbatch().skip(resume)
    np.testing.assert_array_equal(next(iter(fresh))["input_ids"].numpy(), first[0])


@pytest.mark.parametrize("buffer, counts, warned", [
    (200_000, [27_000] * 40, False),  # the default over `small`'s shards: windows of ~3.7 shards
    (20_000, [27_000] * 40, True),  # windows of 0.4 shard: a batch from about one shard
    (107_999, [27_000] * 40, True),
    (108_000, [27_000] * 40, False),  # windows of exactly two shards
    (10, [27_000], False),  # one shard: nothing to mix
])
def test_a_window_smaller_than_two_shards_is_named(buffer, counts, warned):
    found = data.thin_mixing(buffer, counts)
    assert (found is not None) is warned
    if warned:
        assert f"shuffle_buffer {buffer:,}" in found and "216,000" in found  # windows of 4 shards of 27,000
