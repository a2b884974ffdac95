"""The RTD step: every output recomputed by hand from the model's parts on real text."""
import math

import numpy as np
import pytest
import tensorflow as tf

from pretrain.model import masking, sampling
from pretrain.training import metrics
from pretrain.model.rtd import SpecialIds, build_model, rtd_loss, step_key
from rtd_helpers import tiny_config, write_nsmc_records

SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)


def _real_batch(tmp_path, n=8):
    from data_prep import records

    write_nsmc_records(tmp_path, max_seq_length=64, num_examples=16, num_shards=1)
    ex = records.load_examples(str(tmp_path / "pretrain_tfrecords"))
    return [tf.constant(ex[k][:n], tf.int32) for k in ("input_ids", "input_mask", "segment_ids")]


def _softplus(x):
    return np.logaddexp(0, x)


def test_step_outputs_match_a_hand_recomputation(tmp_path):
    cfg = tiny_config()
    tf.keras.utils.set_random_seed(3)
    model = build_model(cfg, SPECIAL)
    ids, mask, seg = _real_batch(tmp_path)
    key, rows = step_key(cfg.seed, 5), tf.range(8, dtype=tf.int64)
    m = model.mask(ids, mask, key=key, rows=rows)
    out = model.step(ids, mask, seg, m, key=key, rows=rows, training=False)

    w = m.weights.numpy()
    # generator: the MLM head on the masked slots == the full-sequence head gathered there
    full = model.generator_logits(m.input_ids, mask, seg).numpy()  # [B, L, V]
    gen = np.take_along_axis(full, m.positions.numpy()[:, :, None], 1)  # [B, N, V]
    logp = gen - np.log(np.exp(gen - gen.max(-1, keepdims=True)).sum(-1, keepdims=True)) - gen.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp, m.original_ids.numpy()[:, :, None], 2)[..., 0]
    np.testing.assert_allclose(out.mlm_loss_sum.numpy(), (nll * w).sum(), rtol=1e-4)
    assert out.mlm_count.numpy() == w.sum()
    # fake tokens: Gumbel-max samples with the step's noise, written at the chosen slots only
    n, v = cfg.max_predictions_per_seq, cfg.vocab_size
    sampled = sampling.gumbel_max_sample(gen, sampling.hash_uniform(key, rows, (n, v), stream=3)).numpy()
    fake = masking.scatter_update(m.input_ids, sampled, m.positions, m.weights).numpy()
    labels = (fake != ids.numpy()) & (mask.numpy() == 1)
    chosen = np.zeros_like(labels)
    np.put_along_axis(chosen, m.positions.numpy(), w > 0, 1)
    assert not (labels & ~chosen).any()  # only chosen positions can be "replaced"
    assert out.replaced.numpy() == labels.sum() > 0
    # discriminator: sigmoid loss over real tokens only
    d = model.discriminator_logits(fake, mask, seg).numpy()
    real = mask.numpy() == 1
    xent = _softplus(d) - d * labels
    np.testing.assert_allclose(out.disc_loss_sum.numpy(), xent[real].sum(), rtol=1e-4)
    assert out.disc_count.numpy() == real.sum()
    assert out.true_pos.numpy() == ((d > 0) & labels).sum()
    assert out.pos_hist.numpy().sum() == labels.sum() and out.neg_hist.numpy().sum() == real.sum() - labels.sum()

    losses = rtd_loss(out, cfg, out.mlm_count, out.disc_count)
    want_mlm, want_disc = (nll * w).sum() / w.sum(), xent[real].sum() / real.sum()
    np.testing.assert_allclose(losses.mlm.numpy(), want_mlm, rtol=1e-4)
    np.testing.assert_allclose(losses.total.numpy(), 1.0 * want_mlm + 50.0 * want_disc, rtol=1e-4)


def test_step_is_deterministic_per_key_and_differs_across_steps(tmp_path):
    cfg = tiny_config()
    model = build_model(cfg, SPECIAL)
    ids, mask, seg = _real_batch(tmp_path)
    rows = tf.range(8, dtype=tf.int64)
    a = model.mask(ids, mask, key=step_key(0, 1), rows=rows)
    b = model.mask(ids, mask, key=step_key(0, 1), rows=rows)
    c = model.mask(ids, mask, key=step_key(0, 2), rows=rows)
    np.testing.assert_array_equal(a.positions.numpy(), b.positions.numpy())
    assert not np.array_equal(a.positions.numpy(), c.positions.numpy())


def test_base_rate_loss_is_the_binary_entropy_of_the_replaced_share():
    assert metrics.base_rate_loss(0.5) == pytest.approx(math.log(2))
    assert metrics.base_rate_loss(0.135) == pytest.approx(0.3958, abs=1e-4)
    assert metrics.base_rate_loss(0.0) == 0.0 and math.isnan(metrics.base_rate_loss(float("nan")))
    # the sigmoid cross-entropy of the best constant logit, over labels with that share of ones
    labels = np.array([1.0] * 27 + [0.0] * 173)
    logit = math.log(27 / 173)
    xent = np.mean(np.log1p(np.exp(-logit)) * labels + np.log1p(np.exp(logit)) * (1 - labels))
    assert metrics.base_rate_loss(labels.mean()) == pytest.approx(xent)


def test_auc_from_histograms():
    assert metrics.auc_from_histograms([0, 0, 5], [5, 0, 0]) == 1.0
    assert metrics.auc_from_histograms([5, 0, 0], [0, 0, 5]) == 0.0
    assert metrics.auc_from_histograms([1, 1], [1, 1]) == 0.5
    # pos scores {b1, b2}, neg {b0, b1}: pairs (b1>b0)=1, (b1=b1)=.5, (b2>b0)=1, (b2>b1)=1 -> 3.5/4
    assert metrics.auc_from_histograms([0, 1, 1], [1, 1, 0]) == 0.875


def test_mlm_only_runs_no_sampling_and_no_discriminator(tmp_path, monkeypatch):
    """disc_weight 0 (the payoff's MLM control): the generator's sums as in RTD, the discriminator's all zero,
    and neither the Gumbel sampler nor the discriminator is called."""
    ids, mask, seg = _real_batch(tmp_path)
    key, rows = step_key(0, 5), tf.range(8, dtype=tf.int64)
    outs = {}
    for weight in (50.0, 0.0):
        tf.keras.utils.set_random_seed(3)
        model = build_model(tiny_config(disc_weight=weight), SPECIAL)
        m = model.mask(ids, mask, key=key, rows=rows)
        if weight == 0.0:
            def refuse(*args, **kwargs):
                raise AssertionError("called in MLM-only mode")
            monkeypatch.setattr(sampling, "gumbel_max_sample", refuse)
            monkeypatch.setattr(model.discriminator, "call", refuse)
        outs[weight] = model.step(ids, mask, seg, m, key=key, rows=rows, training=False)
    rtd, mlm = outs[50.0], outs[0.0]
    for name in ("mlm_loss_sum", "mlm_count", "mlm_correct", "disc_count"):
        np.testing.assert_allclose(getattr(mlm, name).numpy(), getattr(rtd, name).numpy(), rtol=1e-6)
    assert rtd.replaced.numpy() > 0
    for name in ("disc_loss_sum", "disc_correct", "replaced", "true_pos", "pred_pos"):
        assert getattr(mlm, name).numpy() == 0.0
    assert mlm.pos_hist.numpy().sum() == mlm.neg_hist.numpy().sum() == 0.0
    cfg = tiny_config(disc_weight=0.0)
    losses = rtd_loss(mlm, cfg, mlm.mlm_count, mlm.disc_count)
    np.testing.assert_allclose(losses.total.numpy(), losses.mlm.numpy(), rtol=1e-6)
