"""The tf.data input of pretraining: shards (local or gs://) -> per-replica batches.

The record order is seekable, so a resume reads less than one shard plus the shuffle buffer
per input pipeline before its first step, not the records the finished steps used (the
old `skip` read and parsed every one of them: ~358M records at step 700k of `small`).
Each input pipeline (host) reads every k-th shard; its record stream is a pure function
of the seed and the shards' record counts (the manifest's `examples_per_shard`):
- epoch e reads the pipeline's non-empty shards whole, one after another, in an order
  drawn from (seed, e) (`file_order`);
- the endless stream, epoch after epoch, is cut into windows of `shuffle_buffer` / 2 records
  and each window is permuted by (seed, window index) (`window_order`); the buffer holds two
  windows, the one in use and the next, read ahead while this one is used.
So example K of a pipeline is found by arithmetic (`seek`): its window, the epoch and the
shard where that window starts, and how many records of that shard come before it. The
shards before it are not opened, the start of that one shard is read and dropped, and the
first K - window start examples of the permuted window are dropped. Records read before
the first batch: less than one shard + two windows (the shuffle buffer).
Batches use `drop_remainder` (static shapes for XLA/TPU) and are prefetched.

Each record travels with the name of its shard, so the two faults that only show once a
record is read name the shard: an id outside the vocab (checked here on the host, outside
any XLA cluster, where an out-of-range gather would silently read garbage) and a damaged
record (`named_input_errors` finds the shard when TF's DataLossError does not say).
"""
from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
from foundation.quiet_tf import tf
from absl import logging

from data_prep import records
from foundation import fileio
from foundation.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
_OUT_OF_VOCAB = "<<token id out of vocab>>"
_OUT_OF_VOCAB_RE = re.compile(re.escape(_OUT_OF_VOCAB) + r"(.*?)\|(-?\d+)" + re.escape(_OUT_OF_VOCAB))
_DAMAGED_AT_RE = re.compile(r"record at (\d+)")


def _shard_records(path: tf.Tensor) -> tf.data.Dataset:
    """(serialised record, its shard's path) pairs of one shard, in file order: the one place a shard is opened."""
    return tf.data.TFRecordDataset(path).map(lambda r: (r, path))


def _permutation(n, seed: int, stream: int, index) -> tf.Tensor:
    """A permutation of range(n) [n] int32 drawn from (seed, stream, index) alone (stateless)."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64) * 2 + stream])
    return tf.argsort(tf.random.stateless_uniform([n], seed=key), stable=True)


def file_order(num_files: int, seed: int, epoch) -> tf.Tensor:
    """The order [num_files] in which epoch `epoch` reads a pipeline's non-empty shards."""
    return _permutation(num_files, seed, 0, epoch)


def window_order(size: int, seed: int, window) -> tf.Tensor:
    """The permutation [size] of the records of window `window` (window w holds stream records w*size ...)."""
    return _permutation(size, seed, 1, window)


class StreamStart(NamedTuple):
    """Where a pipeline's stream resumes: everything reading it needs, computed without reading."""

    window: int  # the window holding the resume position
    epoch: int  # the epoch in which that window starts
    order: tuple[int, ...]  # that epoch's shard order (indices into the pipeline's non-empty shards)
    first_file: int  # position in `order` of the shard holding the window's first record
    skip_in_file: int  # records of that shard before the window's first record (read, dropped)
    skip_in_window: int  # examples of the permuted window already consumed (dropped)


def seek(counts: Sequence[int], position: int, window_size: int,
         order_of: Callable[[int], Sequence[int]]) -> StreamStart:
    """Where example `position` is in an endless stream of epochs over shards of `counts` records.

    `order_of(epoch)` is that epoch's shard order; pure arithmetic, nothing is read.
    """
    window, in_window = divmod(position, window_size)
    epoch, offset = divmod(window * window_size, sum(counts))
    order = tuple(int(i) for i in order_of(epoch))
    ends = np.cumsum([counts[i] for i in order])
    first = int(np.searchsorted(ends, offset, side="right"))
    before = int(ends[first - 1]) if first else 0
    return StreamStart(window, epoch, order, first, offset - before, in_window)


def count_records(files: list[str]) -> list[int]:
    """Records per shard, read through once with TF's reader (framing and checksums, no parsing)."""
    def count(path: str) -> int:
        try:
            return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
        except tf.errors.DataLossError as exc:
            found = damaged_shard([path]) or f"{path}: {exc.message}"
            raise UserError(f"{found}; rebuild the records (electra-build-data)") from exc

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(count, files))


def _pipeline_position(input_context: tf.distribute.InputContext | None) -> tuple[int, int]:
    """(input pipelines, this one's id): one pipeline without a context."""
    return (input_context.num_input_pipelines, input_context.input_pipeline_id) if input_context else (1, 0)


def _pipeline_shards(files: list[str], examples_per_shard: Sequence[int] | None,
                     input_context: tf.distribute.InputContext | None) -> tuple[list[str], list[int]]:
    """This pipeline's non-empty shards (every k-th one) and their record counts."""
    pipelines, pid = _pipeline_position(input_context)
    mine = files[pid::pipelines]
    if examples_per_shard is None:
        started = time.monotonic()
        counts = count_records(mine)
        logging.warning("no %s beside the shards (data from the original tool?): counted the %d records of %d "
                        "shard(s) by reading them through (%.1f s), as every start will; records built by "
                        "electra-build-data carry their counts", records.MANIFEST, sum(counts), len(mine),
                        time.monotonic() - started)
    elif len(examples_per_shard) != len(files):
        raise UserError(f"{len(files)} shards but {len(examples_per_shard)} record counts in the manifest")
    else:
        counts = list(examples_per_shard[pid::pipelines])
    kept = [(f, n) for f, n in zip(mine, counts) if n > 0]
    if not kept:
        raise UserError(f"input pipeline {pid} of {pipelines} gets no records: its shards (every {pipelines}th of "
                        f"{len(files)}) are empty or missing; rebuild the records with --num-shards a multiple of "
                        f"{pipelines}")
    return [f for f, _ in kept], [n for _, n in kept]


MIN_SHARDS_PER_WINDOW = 2  # below this a batch draws its examples from about one shard


def window_size(shuffle_buffer: int) -> int:
    """Records per permuted window: the buffer holds two (the one in use, the next read ahead)."""
    return shuffle_buffer // 2


def thin_mixing(shuffle_buffer: int, counts: Sequence[int]) -> str | None:
    """Why this buffer's windows mix too few shards (a batch comes from one window), or None.

    A build keeps each input file's text together, so a shard is one stretch of the corpus;
    a window of fewer records than two shards makes most batches one stretch of text.
    """
    per_shard, window = sum(counts) / len(counts), window_size(shuffle_buffer)
    if len(counts) < MIN_SHARDS_PER_WINDOW or window >= MIN_SHARDS_PER_WINDOW * per_shard:
        return None
    return (f"shuffle_buffer {shuffle_buffer:,} gives windows of {window / per_shard:.1f} of a shard's "
            f"~{per_shard:,.0f} records, so most batches come from one shard; set shuffle_buffer to "
            f"{8 * per_shard:,.0f} (windows of 4 shards, "
            "about google-research/electra's mixing) or build smaller shards (docs/tpu_gpu.md, Resuming)")


def train_dataset(files: list[str], *, max_seq_length: int, batch_size: int, seed: int, shuffle_buffer: int,
                  vocab_size: int, examples_per_shard: Sequence[int] | None, skip_examples: int = 0,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Endless shuffled batches of `batch_size` examples ({name: [b, L] int32}), from example `skip_examples`.

    `skip_examples` counts examples of this input pipeline already consumed (resume); it
    costs less than one shard + `shuffle_buffer` records of reading (see the module docstring).
    `examples_per_shard` (the manifest's, in `files` order) makes that arithmetic; None
    (records without a manifest) counts this pipeline's shards first, reading them once.
    With several input pipelines (hosts) each reads every k-th file.
    """
    paths, counts = _pipeline_shards(files, examples_per_shard, input_context)
    thin = thin_mixing(shuffle_buffer, counts)
    if thin:
        logging.warning(thin)
    window = window_size(shuffle_buffer)
    start = seek(counts, skip_examples, window, lambda e: file_order(len(paths), seed, e).numpy())
    table = tf.constant(paths)
    rest_of_epoch = tf.data.Dataset.from_tensor_slices((
        [paths[i] for i in start.order[start.first_file:]],
        np.array([start.skip_in_file] + [0] * (len(start.order) - start.first_file - 1), np.int64)))
    later_epochs = tf.data.Dataset.counter(start.epoch + 1).flat_map(lambda e: tf.data.Dataset.from_tensor_slices((
        tf.gather(table, file_order(len(paths), seed, e)), tf.zeros([len(paths)], tf.int64))))
    stream = rest_of_epoch.concatenate(later_epochs).flat_map(lambda path, skip: _shard_records(path).skip(skip))
    windows = tf.data.Dataset.zip(tf.data.Dataset.counter(start.window),
                                  stream.batch(window, drop_remainder=True))  # endless: never short
    ds = windows.map(lambda w, pair: tuple(tf.gather(t, window_order(window, seed, w)) for t in pair))
    ds = ds.prefetch(1).unbatch().skip(start.skip_in_window)  # the next window is read while this one is used
    # Endless, and said so: with several workers tf.distribute gives batches of unknown
    # cardinality a dynamic batch dimension (a worker might run out first).
    ds = ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    return _batched(ds, batch_size, max_seq_length, vocab_size)


def eval_dataset(files: list[str], *, max_seq_length: int, batch_size: int, vocab_size: int,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One pass over this pipeline's files (every k-th one) in order, full batches only."""
    pipelines, pid = _pipeline_position(input_context)
    ds = tf.data.Dataset.from_tensor_slices(files[pid::pipelines])
    return _batched(ds.flat_map(_shard_records), batch_size, max_seq_length, vocab_size)


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
