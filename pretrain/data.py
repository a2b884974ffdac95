"""The tf.data input of pretraining: shards (local or gs://) -> per-replica batches.

Files are shuffled and interleaved in parallel, records shuffled with the run's seed, then
batched with `drop_remainder` (static shapes for XLA/TPU) and prefetched. The order is a
pure function of the seed, so a resumed run skips the records the finished steps used and
continues exactly where the killed run was (`skip_examples`).
"""
from __future__ import annotations

import tensorflow as tf

from data_prep import records

AUTOTUNE = tf.data.AUTOTUNE


def train_dataset(files: list[str], *, max_seq_length: int, batch_size: int, seed: int, shuffle_buffer: int,
                  skip_examples: int = 0, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Endless shuffled batches of `batch_size` examples ({name: [b, L] int32}).

    `skip_examples` counts examples of this input pipeline already consumed (resume).
    With several input pipelines (hosts) each reads every k-th file.
    """
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8), block_length=1,
                       num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    if skip_examples:
        ds = ds.skip(skip_examples)
    return _batched(ds, batch_size, max_seq_length)


def eval_dataset(files: list[str], *, max_seq_length: int, batch_size: int,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One pass over the files in order, full batches only."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)
    return _batched(ds, batch_size, max_seq_length)


def _batched(ds: tf.data.Dataset, batch_size: int, max_seq_length: int) -> tf.data.Dataset:
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda s: records.parse_example(s, max_seq_length), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def distributed(strategy: tf.distribute.Strategy, make, global_batch_size: int):
    """`make(batch_size, input_context)` per input pipeline, per-replica batches of global/replicas."""
    def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return make(ctx.get_per_replica_batch_size(global_batch_size), ctx)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(fn, options)
