"""Randomness for the RTD step: counter-based uniform noise and Gumbel-max sampling.

The noise is a hash of (seed, step, global example index, element index), not a stateful
generator, so an example gets the same mask and the same sampled tokens whether the global
batch runs on one device or is split over eight replicas, and a resumed run repeats the
draws of the steps it replays. Uniforms are in the open interval (0, 1).
"""
from __future__ import annotations

import tensorflow as tf

_M1 = 0x85EBCA6B  # murmur3 finaliser constants
_M2 = 0xC2B2AE35
_GOLDEN = 0x9E3779B9


def _mix(x: tf.Tensor) -> tf.Tensor:
    """murmur3's 32-bit finaliser: every input bit affects every output bit."""
    u = lambda c: tf.constant(c, tf.uint32)  # noqa: E731
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, u(16)))
    x = x * u(_M1)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, u(13)))
    x = x * u(_M2)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, u(16)))


def hash_uniform(key: tf.Tensor, rows: tf.Tensor, tail_shape: tuple[int, ...], stream: int) -> tf.Tensor:
    """Uniform noise in (0, 1) that depends only on (key, stream, row id, element index).

    Args:
      key: int scalar (e.g. seed * 1_000_003 + step), one per training step.
      rows: [B] int, global example indices of the batch rows.
      tail_shape: the per-example shape, e.g. (L,) or (N, V).
      stream: a small int that separates independent uses within one step.
    Returns:
      [B, *tail_shape] float32.
    """
    return _hash_uniform(tf.cast(key, tf.int64), tf.cast(rows, tf.int64), tuple(int(d) for d in tail_shape), stream)


@tf.function(jit_compile=True)  # fused by XLA: ~10x faster than op by op on [B, N, V]
def _hash_uniform(key, rows, tail_shape, stream):
    size = 1
    for d in tail_shape:
        size *= d
    golden = tf.constant(_GOLDEN, tf.uint32)
    k = _mix(tf.cast(tf.bitwise.bitwise_and(key, 0xFFFFFFFF), tf.uint32)
             + tf.constant((stream * _GOLDEN) & 0xFFFFFFFF, tf.uint32))
    r = _mix(tf.cast(tf.bitwise.bitwise_and(rows, 0xFFFFFFFF), tf.uint32) * golden + k)  # [B]
    idx = tf.cast(tf.range(size), tf.uint32)  # [S]
    h = _mix(r[:, None] + idx[None, :] * golden)  # [B, S]: a Weyl sequence per row, finalised
    # top 24 bits -> (0, 1): (h + 0.5) / 2^24 is never exactly 0 or 1
    bits = tf.cast(tf.bitwise.right_shift(h, tf.constant(8, tf.uint32)), tf.float32)
    u = (bits + 0.5) * (1.0 / 16777216.0)
    return tf.reshape(u, [-1, *tail_shape])


def gumbel_max_sample(logits: tf.Tensor, uniform: tf.Tensor, temperature: float = 1.0) -> tf.Tensor:
    """Sample ids from softmax(logits / temperature) by the Gumbel-max trick, under stop-gradient.

    Args:
      logits: [..., V] float.
      uniform: [..., V] float32 in (0, 1), e.g. from `hash_uniform`.
    Returns:
      [...] int32 ids (never one-hots over V).
    """
    logits = tf.stop_gradient(tf.cast(logits, tf.float32))
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.argmax(logits / temperature + gumbel, axis=-1, output_type=tf.int32)
