"""Which tokens the generator predicts, and the gather/scatter helpers the RTD step uses.

Pure TensorFlow functions; the noise comes in as a tensor (see `sampling.hash_uniform`),
so each function is deterministic and testable with hand-made inputs. Letters: B batch,
L sequence length, N = max_predictions_per_seq masked slots (a static size for XLA/TPU).
Slots past an example's share are padding: position 0, weight 0.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from foundation.quiet_tf import tf

MASK_FRACTION = 0.85  # the original: 85% of chosen tokens become [MASK], the rest stay as they are


class Masked(NamedTuple):
    input_ids: tf.Tensor  # [B, L] int32 with [MASK] at most chosen positions
    positions: tf.Tensor  # [B, N] int32
    original_ids: tf.Tensor  # [B, N] int32, the tokens the generator must predict
    weights: tf.Tensor  # [B, N] float32, 1 for a real slot, 0 for padding


def candidates(input_ids: tf.Tensor, input_mask: tf.Tensor, special_ids: Sequence[int]) -> tf.Tensor:
    """[B, L] bool: real tokens that may be masked (never padding or the given special ids)."""
    ok = tf.cast(input_mask, tf.bool)
    for sid in special_ids:
        ok &= tf.not_equal(input_ids, sid)
    return ok


def num_to_predict(input_mask: tf.Tensor, num_candidates: tf.Tensor, mask_prob: float, n: int) -> tf.Tensor:
    """[B] int32: round(mask_prob * real tokens) as the original, at least 1, at most N and the candidates."""
    num_tokens = tf.reduce_sum(tf.cast(input_mask, tf.float32), axis=-1)
    k = tf.cast(tf.round(num_tokens * mask_prob), tf.int32)
    return tf.minimum(tf.clip_by_value(k, 1, n), tf.cast(num_candidates, tf.int32))


def choose_positions(cands: tf.Tensor, count: tf.Tensor, noise: tf.Tensor, n: int,
                     with_replacement: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Pick up to N candidate positions per row.

    Args:
      cands: [B, L] bool candidates.
      count: [B] int32 slots to fill (<= N).
      noise: uniform (0, 1); [B, L] without replacement, [B, N] with replacement.
      with_replacement: the original's sampler: N independent draws; repeats are dropped
        (weight 0), so it masks fewer than `count`, as the original does.
    Returns:
      positions [B, N] int32, weights [B, N] float32.
    """
    live = tf.sequence_mask(count, n)  # [B, N]
    cand_f = tf.cast(cands, tf.float32)
    if with_replacement:
        cdf = tf.math.cumsum(cand_f, axis=-1)  # [B, L]
        target = noise * cdf[:, -1:]  # [B, N]
        positions = tf.searchsorted(cdf, target, side="right", out_type=tf.int32)
        positions = tf.minimum(positions, tf.shape(cands)[1] - 1)
        same = tf.equal(positions[:, :, None], positions[:, None, :])  # [B, N, N]
        earlier = tf.linalg.band_part(tf.ones([n, n]), -1, 0) - tf.eye(n)  # [N, N]: slot j < slot i
        earlier_live = tf.cast(live, tf.float32)[:, None, :] * earlier[None]  # slot j < i and live
        repeat = tf.reduce_any(same & (earlier_live > 0), axis=-1)
        live &= ~repeat
    else:
        score = tf.where(cands, noise, -1.0)  # [B, L]
        _, positions = tf.math.top_k(score, k=n)  # [B, N] distinct positions
        positions = tf.cast(positions, tf.int32)
    positions = tf.where(live, positions, 0)
    return positions, tf.cast(live, tf.float32)


def gather_positions(sequence: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """[B, L, ...] gathered at [B, N] positions -> [B, N, ...]."""
    return tf.gather(sequence, positions, batch_dims=1)


def scatter_update(sequence: tf.Tensor, updates: tf.Tensor, positions: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """[B, L] ids with `updates` [B, N] written at the weighted `positions` [B, N].

    Weighted positions are distinct (see `choose_positions`); a [B, N, L] one-hot over
    positions (not the vocab) keeps this exact and XLA-friendly.
    """
    length = tf.shape(sequence)[1]
    hit = tf.one_hot(positions, length, dtype=tf.int32) * tf.cast(weights, tf.int32)[:, :, None]  # [B, N, L]
    touched = tf.reduce_max(hit, axis=1) > 0  # [B, L]
    values = tf.reduce_sum(hit * tf.cast(updates, tf.int32)[:, :, None], axis=1)  # [B, L]
    return tf.where(touched, values, tf.cast(sequence, tf.int32))


def mask_tokens(input_ids: tf.Tensor, input_mask: tf.Tensor, *, mask_id: int, special_ids: Sequence[int],
                mask_prob: float, n: int, position_noise: tf.Tensor, keep_noise: tf.Tensor,
                with_replacement: bool = False) -> Masked:
    """Choose mask_prob of the maskable tokens and put [MASK] on 85% of them.

    Args:
      input_ids, input_mask: [B, L] int.
      position_noise: [B, L] (or [B, N] with replacement) uniform.
      keep_noise: [B, N] uniform; a slot keeps its token when noise >= 0.85.
    """
    input_ids = tf.cast(input_ids, tf.int32)
    cands = candidates(input_ids, input_mask, special_ids)
    count = num_to_predict(input_mask, tf.reduce_sum(tf.cast(cands, tf.int32), -1), mask_prob, n)
    positions, weights = choose_positions(cands, count, position_noise, n, with_replacement)
    original = gather_positions(input_ids, positions) * tf.cast(weights, tf.int32)
    to_mask = weights * tf.cast(keep_noise < MASK_FRACTION, tf.float32)
    masked = scatter_update(input_ids, tf.fill(tf.shape(positions), mask_id), positions, to_mask)
    return Masked(masked, positions, original, weights)
