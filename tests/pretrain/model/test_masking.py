"""Masking, gather/scatter and sampling: hand-computed cases and statistics on real records."""
import numpy as np
import tensorflow as tf

from pretrain.model import masking, sampling

PAD, CLS, SEP, MASK = 0, 2, 3, 4
SPECIAL = (PAD, CLS, SEP, MASK)


def test_candidates_never_special_or_padding():
    ids = tf.constant([[CLS, 10, 11, SEP, 12, SEP, PAD, PAD]])
    mask = tf.constant([[1, 1, 1, 1, 1, 1, 0, 0]])
    assert masking.candidates(ids, mask, SPECIAL).numpy().tolist() == [[False, True, True, False, True, False, False, False]]


def test_num_to_predict_rounds_like_the_original_and_is_bounded():
    mask = tf.sequence_mask([40, 3, 128], 128)
    got = masking.num_to_predict(mask, tf.constant([38, 1, 126]), 0.15, n=19).numpy().tolist()
    assert got == [6, 1, 19]  # round(6.0)=6; max(1, round(0.45)) = 1 (<= 1 candidate); min(N, round(19.2))


def test_choose_positions_without_replacement_distinct_candidates_only():
    cands = tf.constant([[False, True, True, True, False, True, False, False]] * 3)
    noise = tf.constant([[.9, .1, .8, .3, .99, .7, .5, .6], [.1, .2, .3, .4, .5, .6, .7, .8], [.5] * 8])
    pos, w = masking.choose_positions(cands, tf.constant([2, 4, 1]), noise, n=5)
    assert pos.numpy().tolist()[0][:2] == [2, 5]  # the two highest-noise candidates
    assert w.numpy().tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]]
    assert sorted(pos.numpy()[1][:4].tolist()) == [1, 2, 3, 5]  # all 4 candidates, each once
    assert pos.numpy()[0][2:].tolist() == [0, 0, 0]  # padding slots point at 0 with weight 0


def test_choose_positions_with_replacement_drops_repeats_as_the_original_masks_fewer():
    cands = tf.constant([[False, True, True, False]])
    # four draws over the two candidates: cdf [0,1,2,2]/2 -> u<.5 -> pos 1, else pos 2
    pos, w = masking.choose_positions(cands, tf.constant([4]), tf.constant([[.1, .7, .2, .9]]), n=4, with_replacement=True)
    assert pos.numpy().tolist() == [[1, 2, 0, 0]]
    assert w.numpy().tolist() == [[1, 1, 0, 0]]


def test_gather_and_scatter():
    seq = tf.constant([[10, 11, 12, 13], [20, 21, 22, 23]])
    pos = tf.constant([[2, 0], [1, 3]])
    assert masking.gather_positions(seq, pos).numpy().tolist() == [[12, 10], [21, 23]]
    out = masking.scatter_update(seq, tf.constant([[7, 8], [5, 6]]), pos, tf.constant([[1.0, 0.0], [1.0, 1.0]]))
    assert out.numpy().tolist() == [[10, 11, 7, 13], [20, 5, 22, 6]]  # weight-0 slot leaves position 0 alone


def test_mask_tokens_on_real_records_rates_and_invariants(tmp_path):
    from data_prep import records
    from rtd_helpers import write_nsmc_records

    write_nsmc_records(tmp_path, max_seq_length=64, num_examples=256, num_shards=1)
    ex = records.load_examples(str(tmp_path / "pretrain_tfrecords"))
    ids, mask = tf.constant(ex["input_ids"], tf.int32), tf.constant(ex["input_mask"], tf.int32)
    rows = tf.range(256, dtype=tf.int64)
    n = 9
    m = masking.mask_tokens(ids, mask, mask_id=MASK, special_ids=SPECIAL, mask_prob=0.15, n=n,
                            position_noise=sampling.hash_uniform(1, rows, (64,), 1),
                            keep_noise=sampling.hash_uniform(1, rows, (n,), 2))
    w = m.weights.numpy()
    real = ex["input_mask"].sum(1)
    np.testing.assert_array_equal(w.sum(1), np.clip(np.round(real * 0.15), 1, n))  # without replacement: exact count
    chosen = np.take_along_axis(ex["input_ids"], m.positions.numpy(), 1)
    np.testing.assert_array_equal(m.original_ids.numpy(), chosen * w)
    assert not np.isin(chosen[w > 0], SPECIAL).any()  # never [CLS]/[SEP]/[PAD]
    changed = m.input_ids.numpy() != ex["input_ids"]
    assert (m.input_ids.numpy()[changed] == MASK).all()
    frac_masked = changed.sum() / w.sum()
    assert 0.80 < frac_masked < 0.90  # 85% [MASK], 15% kept, no random replacement
    # with replacement (the original's sampler) masks fewer than asked
    m2 = masking.mask_tokens(ids, mask, mask_id=MASK, special_ids=SPECIAL, mask_prob=0.15, n=n,
                             position_noise=sampling.hash_uniform(1, rows, (n,), 1),
                             keep_noise=sampling.hash_uniform(1, rows, (n,), 2), with_replacement=True)
    assert m2.weights.numpy().sum() < w.sum()
    assert len({tuple(sorted(p[ww > 0])) for p, ww in zip(m2.positions.numpy(), m2.weights.numpy())}) > 200


def test_hash_uniform_is_uniform_and_independent_of_how_the_batch_is_split():
    rows = tf.range(8, dtype=tf.int64)
    u = sampling.hash_uniform(123, rows, (50, 100), stream=3).numpy()
    assert u.shape == (8, 50, 100) and 0 < u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    hist = np.histogram(u, bins=10, range=(0, 1))[0] / u.size
    assert np.abs(hist - 0.1).max() < 0.005
    assert abs(np.corrcoef(u[:, :, :-1].ravel(), u[:, :, 1:].ravel())[0, 1]) < 0.01
    np.testing.assert_array_equal(sampling.hash_uniform(123, rows[4:], (50, 100), stream=3).numpy(), u[4:])
    assert not np.allclose(sampling.hash_uniform(124, rows, (50, 100), 3).numpy(), u)
    assert not np.allclose(sampling.hash_uniform(123, rows, (50, 100), 4).numpy(), u)


def test_gumbel_max_samples_the_softmax_and_returns_ids():
    logits = tf.math.log(tf.constant([[0.5, 0.3, 0.15, 0.05]]))
    draws = 20000
    u = sampling.hash_uniform(7, tf.range(draws, dtype=tf.int64), (1, 4), stream=3)  # [D, 1, 4]
    ids = sampling.gumbel_max_sample(tf.tile(logits[None], [draws, 1, 1]), u)
    assert ids.dtype == tf.int32 and ids.shape == (draws, 1)
    freq = np.bincount(ids.numpy().ravel(), minlength=4) / draws
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    cold = sampling.gumbel_max_sample(tf.tile(logits[None], [draws, 1, 1]), u, temperature=0.05)
    assert (cold.numpy() == 0).mean() > 0.99


def test_sampling_has_no_gradient():
    logits = tf.Variable([[1.0, 2.0]])
    with tf.GradientTape() as tape:
        ids = sampling.gumbel_max_sample(logits, tf.constant([[0.3, 0.6]]))
        y = tf.reduce_sum(tf.cast(ids, tf.float32)) + 0.0 * tf.reduce_sum(logits)
    assert tape.gradient(y, logits).numpy().tolist() == [[0.0, 0.0]]


def test_hash_uniform_values_are_pinned():
    # the 24-bit integers behind u for (key 123, rows 0 and 5, stream 2): resumed runs depend on them
    u = sampling.hash_uniform(123, tf.constant([0, 5]), (3,), stream=2).numpy()
    bits = np.rint(u * 2 ** 24 - 0.5).astype(np.int64)
    assert bits.tolist() == [[1020140, 4608608, 7438462], [9859832, 5252593, 16692010]]


def test_hash_dropout_keeps_scales_and_is_split_invariant():
    rows = tf.range(8, dtype=tf.int64)
    x = tf.ones([8, 64, 32])
    noise = sampling.make_noise(11, rows, stream=1024)
    y = sampling.dropout(x, noise, 0.25).numpy()
    assert set(np.unique(y).tolist()) == {0.0, float(np.float32(4 / 3))}  # dropped or scaled by 1 / (1 - rate)
    assert abs((y > 0).mean() - 0.75) < 0.01
    # the same elements drop for an example whichever replica (slice of the batch) holds it
    half = sampling.dropout(x[4:], sampling.make_noise(11, rows[4:], stream=1024), 0.25).numpy()
    np.testing.assert_array_equal(half, y[4:])
    # kept exactly where the stream's hash uniform >= rate
    np.testing.assert_array_equal(y > 0, sampling.hash_uniform(11, rows, (64, 32), stream=1024).numpy() >= 0.25)
    with tf.GradientTape() as tape:
        tape.watch(x)
        dropped = sampling.dropout(x, noise, 0.25)
    np.testing.assert_array_equal(tape.gradient(dropped, x, 2 * tf.ones_like(x)).numpy(), 2 * y)  # same mask
    other = sampling.dropout(x, sampling.substream(noise, 1), 0.25).numpy()
    assert not np.array_equal(other, y)
    np.testing.assert_array_equal(sampling.dropout(x, None, 0.25).numpy(), x.numpy())
    np.testing.assert_array_equal(sampling.dropout(x, noise, 0.0).numpy(), x.numpy())
    assert sampling.substream(None, 3) is None and int(sampling.substream(noise, 3).stream) == 1027
