"""The tf.data input of pretraining: shards (local or gs://) -> per-replica batches.

Files are shuffled and interleaved in parallel, records shuffled with the run's seed, then
batched with `drop_remainder` (static shapes for XLA/TPU) and prefetched. The order is a
pure function of the seed, so a resumed run skips the records the finished steps used and
continues exactly where the killed run was (`skip_examples`).

Each record travels with the name of its shard, so the two faults that only show once a
record is read name the shard: an id outside the vocab (checked here on the host, outside
any XLA cluster, where an out-of-range gather would silently read garbage) and a damaged
record (`named_input_errors` finds the shard when TF's DataLossError does not say).
"""
from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import tensorflow as tf

from data_prep import records
from foundation import fileio
from foundation.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
_OUT_OF_VOCAB = "<<token id out of vocab>>"
_OUT_OF_VOCAB_RE = re.compile(re.escape(_OUT_OF_VOCAB) + r"(.*?)\|(-?\d+)" + re.escape(_OUT_OF_VOCAB))
_DAMAGED_AT_RE = re.compile(r"record at (\d+)")


def _named_records(files: tf.data.Dataset, cycle_length: int) -> tf.data.Dataset:
    """(serialised record, its shard's path) pairs, interleaved in a fixed order."""
    return files.interleave(lambda f: tf.data.TFRecordDataset(f).map(lambda r: (r, f)), cycle_length=cycle_length,
                            block_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)


def train_dataset(files: list[str], *, max_seq_length: int, batch_size: int, seed: int, shuffle_buffer: int,
                  vocab_size: int, skip_examples: int = 0,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Endless shuffled batches of `batch_size` examples ({name: [b, L] int32}).

    `skip_examples` counts examples of this input pipeline already consumed (resume).
    With several input pipelines (hosts) each reads every k-th file.
    """
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = _named_records(ds, min(len(files), 8))
    ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    if skip_examples:
        ds = ds.skip(skip_examples)
    return _batched(ds, batch_size, max_seq_length, vocab_size)


def eval_dataset(files: list[str], *, max_seq_length: int, batch_size: int, vocab_size: int,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One pass over the files in order, full batches only."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return _batched(_named_records(ds, 1), batch_size, max_seq_length, vocab_size)


def _checked(serialized: tf.Tensor, shards: tf.Tensor, max_seq_length: int, vocab_size: int) -> dict:
    """Parse a batch [B]; an id outside [0, vocab_size) fails here, naming its shard (see `named_input_errors`)."""
    batch = records.parse_example(serialized, max_seq_length)
    ids = batch["input_ids"]  # [B, L]
    bad = tf.reduce_any((ids < 0) | (ids >= vocab_size), axis=1)  # [B]
    row = tf.argmax(tf.cast(bad, tf.int32))  # the first bad example
    worst = tf.reduce_max(tf.gather(ids, row))
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [tf.strings.join(
        [_OUT_OF_VOCAB, tf.gather(shards, row), "|", tf.strings.as_string(worst), _OUT_OF_VOCAB])])
    with tf.control_dependencies([check]):
        return {name: tf.identity(t) for name, t in batch.items()}


def _batched(ds: tf.data.Dataset, batch_size: int, max_seq_length: int, vocab_size: int) -> tf.data.Dataset:
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda s, f: _checked(s, f, max_seq_length, vocab_size), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def distributed(strategy: tf.distribute.Strategy, make, global_batch_size: int):
    """`make(batch_size, input_context)` per input pipeline, per-replica batches of global/replicas."""
    def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return make(ctx.get_per_replica_batch_size(global_batch_size), ctx)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(fn, options)


def damaged_shard(files: list[str], offset: int | None = None) -> str | None:
    """`records.iter_records`' message for the first damaged shard of `files`, or None.

    Run only after TF reported a damaged record, so a healthy run never pays for it. The
    shards are read through in parallel (each record's length and checksums); with TF's
    byte offset of the damage only the shards longer than it are candidates.
    """
    candidates = [f for f in files if offset is None or fileio.size(f) > offset]

    def problem(path: str) -> str | None:
        try:
            for _ in records.iter_records(path):
                pass
        except UserError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        for found in pool.map(problem, candidates):
            if found is not None:
                pool.shutdown(cancel_futures=True)  # the shards not started yet are not read
                return found
    return None


@contextlib.contextmanager
def named_input_errors(files: list[str], vocab_size: int) -> Iterator[None]:
    """Turn the input pipeline's out-of-vocab check and TF's DataLossError into one line naming the shard."""
    try:
        yield
    except tf.errors.InvalidArgumentError as exc:
        found = _OUT_OF_VOCAB_RE.search(exc.message)
        if found is None:
            raise
        raise UserError(f"{found.group(1)}: token id {found.group(2)} is outside the vocab (vocab_size {vocab_size}); "
                        "the records were built with another vocab: rebuild them or fix vocab_size") from exc
    except tf.errors.DataLossError as exc:
        at = _DAMAGED_AT_RE.search(exc.message)
        found = damaged_shard(files, int(at.group(1)) if at else None)
        if found is None:
            raise
        raise UserError(f"{found}; rebuild the records (electra-build-data)") from exc
