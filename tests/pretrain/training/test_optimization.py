"""The pretraining optimisers: schedule values, decay exclusion, clipping, accumulation, LAMB.

Every update is compared with a NumPy transcription of the original's formulas.
"""
import numpy as np
import pytest

from pretrain.training.distribute import set_logical_cpu_devices

set_logical_cpu_devices(2)  # before TensorFlow creates its devices

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from foundation.errors import UserError  # noqa: E402
from pretrain.training.optimization import (  # noqa: E402
    AdamWeightDecay,
    Lamb,
    learning_rate_schedule,
    make_optimizer,
    uses_weight_decay,
)


def _lr(schedule, step):
    return float(schedule(tf.constant(step)))


def test_schedule_matches_original_polynomial_decay_times_warmup():
    sched = learning_rate_schedule(learning_rate=1e-3, num_train_steps=100, num_warmup_steps=10)
    # decay counts from step 0, including warm-up: lr * (1 - s/100) * min(1, s/10)
    assert _lr(sched, 0) == 0.0
    assert _lr(sched, 5) == pytest.approx(1e-3 * 0.95 * 0.5)
    assert _lr(sched, 10) == pytest.approx(1e-3 * 0.90)
    assert _lr(sched, 55) == pytest.approx(1e-3 * 0.45)
    assert _lr(sched, 100) == 0.0
    assert _lr(sched, 250) == 0.0
    squared = learning_rate_schedule(learning_rate=1e-3, num_train_steps=100, num_warmup_steps=0,
                                     lr_decay_power=2.0)
    assert _lr(squared, 0) == pytest.approx(1e-3)
    assert _lr(squared, 50) == pytest.approx(1e-3 * 0.25)


def test_wsd_warms_up_holds_the_peak_then_decays_linearly_to_zero():
    sched = learning_rate_schedule(learning_rate=1e-3, num_train_steps=100, num_warmup_steps=10,
                                   lr_schedule="wsd", decay_steps=20)
    assert [_lr(sched, s) for s in (0, 5, 10, 50, 80)] == pytest.approx([0.0, 5e-4, 1e-3, 1e-3, 1e-3])
    assert [_lr(sched, s) for s in (85, 90, 99, 100, 250)] == pytest.approx([7.5e-4, 5e-4, 5e-5, 0.0, 0.0])
    # before its decay a rate does not depend on the run's end: a branch continues the long run exactly
    long_run = learning_rate_schedule(learning_rate=1e-3, num_train_steps=10_000, num_warmup_steps=10,
                                      lr_schedule="wsd", decay_steps=1_000)
    assert [_lr(long_run, s) for s in (5, 10, 80)] == [_lr(sched, s) for s in (5, 10, 80)]
    constant = learning_rate_schedule(learning_rate=1e-3, num_train_steps=100, num_warmup_steps=0,
                                      lr_schedule="wsd", decay_steps=0)
    assert [_lr(constant, s) for s in (0, 99, 100)] == pytest.approx([1e-3, 1e-3, 0.0])


def test_wsd_decay_length_from_steps_or_fraction():
    from pretrain.config import from_hparams, wsd_decay_steps

    assert wsd_decay_steps(1000, 0, 0.15) == 150
    assert wsd_decay_steps(1000, 40, 0.15) == 40
    assert from_hparams({"lr_schedule": "wsd", "num_train_steps": 500, "num_warmup_steps": 50}).lr_decay_steps == 100


@pytest.mark.parametrize("kwargs, word", [
    (dict(num_train_steps=0, num_warmup_steps=0), "num_train_steps"),
    (dict(num_train_steps=10, num_warmup_steps=11), "num_warmup_steps"),
    (dict(num_train_steps=10, num_warmup_steps=5, lr_schedule="wsd", decay_steps=6), "decay_steps"),
    (dict(num_train_steps=10, num_warmup_steps=5, lr_schedule="cosine"), "lr_schedule"),
])
def test_schedule_rejects_bad_steps(kwargs, word):
    with pytest.raises(UserError, match=word):
        learning_rate_schedule(learning_rate=1e-3, **kwargs)


def test_make_optimizer_choices():
    assert isinstance(make_optimizer(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=1), AdamWeightDecay)
    assert isinstance(make_optimizer(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=1,
                                     optimizer="lamb"), Lamb)
    fp16 = make_optimizer(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=1, precision="float16")
    assert isinstance(fp16, keras.optimizers.LossScaleOptimizer)
    assert isinstance(fp16.inner_optimizer, AdamWeightDecay)
    with pytest.raises(UserError, match="'sgd'"):
        make_optimizer(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=1, optimizer="sgd")
    with pytest.raises(UserError, match="'half'"):
        make_optimizer(learning_rate=1e-3, num_train_steps=10, num_warmup_steps=1, precision="half")


def test_weight_decay_exclusion_by_path():
    assert not uses_weight_decay("electra/embeddings/LayerNorm/gamma")
    assert not uses_weight_decay("encoder/layer_3/output_layer_norm/beta")
    assert not uses_weight_decay("generator/layer_normalization/gamma")  # Keras' default name
    assert not uses_weight_decay("encoder/layer_3/attention/query/bias")
    assert uses_weight_decay("encoder/layer_3/attention/query/kernel")
    assert uses_weight_decay("embeddings/word_embeddings/embeddings")


class Toy(keras.Model):
    """x [B, 4] -> Dense(3) -> LayerNorm; variables named like the encoder's."""

    def __init__(self):
        super().__init__(name="toy")
        self.dense = keras.layers.Dense(3, name="dense", bias_initializer="ones")
        self.norm = keras.layers.LayerNormalization(name="layer_norm", epsilon=1e-12)

    def call(self, x):
        return self.norm(self.dense(x))


def _toy(seed=0):
    keras.utils.set_random_seed(seed)
    model = Toy()
    model(tf.zeros([1, 4]))
    return model


def _data(n, seed=1):
    """Inputs and the outputs of a differently initialised Toy: a problem the Toy can learn."""
    x = np.random.default_rng(seed).normal(size=(n, 4)).astype("float32")
    return x, np.array(_toy(seed=99)(x))


def _train(model, opt, x, y, micro_batch, global_batch, strategy):
    """Custom tf.function step under `strategy`, as the trainer runs it; returns losses."""
    with strategy.scope():
        opt.build(model.trainable_variables)  # slots exist before tracing, as the trainer does

    @tf.function
    def step(inputs):
        def replica_fn(xb, yb):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(model(xb) - yb)) / global_batch
                scaled = opt.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_fn, args=inputs), axis=None)

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(micro_batch, drop_remainder=True)
    return [float(step(batch)) for batch in strategy.experimental_distribute_dataset(data)]


def _weights(model):
    return [np.array(v) for v in model.trainable_variables]


def test_adamw_step_equals_original_formula_with_decay_exclusion():
    model = _toy()
    before = {v.path: np.array(v) for v in model.trainable_variables}
    grads = [tf.fill(v.shape, 0.5) * (i + 1) for i, v in enumerate(model.trainable_variables)]
    opt = AdamWeightDecay(learning_rate=0.1, weight_decay_rate=0.2, clip_norm=None)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    for v, g in zip(model.trainable_variables, grads):
        g = np.array(g)
        m, s = 0.1 * g, 0.001 * g * g  # one step from zero moments, no bias correction
        update = m / (np.sqrt(s) + 1e-6)
        if v.path.endswith("kernel"):
            update = update + 0.2 * before[v.path]
        np.testing.assert_allclose(np.array(v), before[v.path] - 0.1 * update, rtol=1e-5, atol=1e-6)
    paths = sorted(v.path for v in model.trainable_variables)
    assert paths == ["toy/dense/bias", "toy/dense/kernel", "toy/layer_norm/beta", "toy/layer_norm/gamma"]


def test_adamw_bias_correction_equals_adam_over_three_steps():
    """`adam_bias_correction`: m / (1 - b1^t) over sqrt(v / (1 - b2^t)), per step, decay as before."""
    model = _toy()
    w = {v.path: np.array(v, dtype=np.float64) for v in model.trainable_variables}
    m = {p: np.zeros_like(x) for p, x in w.items()}
    s = {p: np.zeros_like(x) for p, x in w.items()}
    opt = make_optimizer(learning_rate=0.1, num_train_steps=1000, num_warmup_steps=0, lr_decay_power=0.0,
                         weight_decay_rate=0.2, clip_norm=0.0, adam_bias_correction=True)
    rng = np.random.default_rng(0)
    for t in (1, 2, 3):
        grads = [rng.normal(size=v.shape).astype(np.float32) for v in model.trainable_variables]
        opt.apply_gradients([(tf.constant(g), v) for g, v in zip(grads, model.trainable_variables)])
        for v, g in zip(model.trainable_variables, grads):
            p = v.path
            m[p] = 0.9 * m[p] + 0.1 * g
            s[p] = 0.999 * s[p] + 0.001 * g * g
            update = m[p] / (1 - 0.9**t) / (np.sqrt(s[p] / (1 - 0.999**t)) + 1e-6)
            if p.endswith("kernel"):
                update = update + 0.2 * w[p]
            w[p] = w[p] - 0.1 * update
            np.testing.assert_allclose(np.array(v), w[p], rtol=1e-4, atol=1e-5)
    # the first corrected step is the full learning rate per coordinate, not 3.16x of it
    first = AdamWeightDecay(learning_rate=0.1, weight_decay_rate=0.0, clip_norm=None, bias_correction=True)
    var = tf.Variable([1.0, -2.0])
    first.apply_gradients([(tf.constant([0.3, -5.0]), var)])
    np.testing.assert_allclose(np.array(var), [0.9, -1.9], rtol=1e-5)


def test_zero_gradient_decays_only_kernels():
    model = _toy()
    before = {v.path: np.array(v) for v in model.trainable_variables}
    opt = AdamWeightDecay(learning_rate=0.5, weight_decay_rate=0.1)
    opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    after = {v.path: np.array(v) for v in model.trainable_variables}
    np.testing.assert_allclose(after["toy/dense/kernel"], before["toy/dense/kernel"] * (1 - 0.05), rtol=1e-6)
    for path in ("toy/dense/bias", "toy/layer_norm/gamma", "toy/layer_norm/beta"):
        np.testing.assert_array_equal(after[path], before[path])


def test_global_norm_clipping():
    model = _toy()
    before = _weights(model)
    grads = [tf.fill(v.shape, 3.0) for v in model.trainable_variables]  # global norm 3*sqrt(24)
    # SGD-like check through Adam is insensitive to scale, so look at the first moment instead.
    opt = AdamWeightDecay(learning_rate=0.0, weight_decay_rate=0.0, clip_norm=1.0)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    norm = 3.0 * np.sqrt(sum(np.prod(v.shape) for v in model.trainable_variables))
    for m in opt._m:
        np.testing.assert_allclose(np.array(m), 0.1 * 3.0 / norm, rtol=1e-5)
    for w0, w1 in zip(before, _weights(model)):
        np.testing.assert_array_equal(w0, w1)  # lr 0 at this step


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_accumulation_under_mirrored_strategy_equals_big_batch(name):
    """2 replicas x 2 accumulated micro batches of 8 == one device, batches of 16."""
    x, y = _data(64)
    common = dict(learning_rate=0.05, num_train_steps=10, num_warmup_steps=2, optimizer=name,
                  clip_norm=0.5, weight_decay_rate=0.1)  # clipping active: grad norm > 0.5

    reference = tf.distribute.get_strategy()
    model = _toy()
    opt = make_optimizer(**common)
    ref_losses = _train(model, opt, x, y, micro_batch=16, global_batch=16, strategy=reference)
    expected = _weights(model)

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with mirrored.scope():
        model = _toy()
        opt = make_optimizer(**common, gradient_accumulation_steps=2)
    # each micro batch's loss is its own mean; the optimiser averages the two micro gradients
    losses = _train(model, opt, x, y, micro_batch=8, global_batch=8, strategy=mirrored)

    assert int(opt.iterations) == 4 and len(losses) == 8
    for got, want in zip(_weights(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # each big-batch loss is the mean of its two halves' losses (both halves see the same weights)
    assert ref_losses[0] == pytest.approx((losses[0] + losses[1]) / 2, rel=1e-5)
    assert ref_losses[2] == pytest.approx((losses[4] + losses[5]) / 2, rel=1e-4)


def test_lamb_step_equals_reference_and_learns():
    model = _toy()
    before = {v.path: np.array(v) for v in model.trainable_variables}
    grads = [tf.constant(np.linspace(-1, 1, int(np.prod(v.shape))).reshape(v.shape), tf.float32)
             for v in model.trainable_variables]
    opt = Lamb(learning_rate=0.1, weight_decay_rate=0.01, clip_norm=None)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    for v, g in zip(model.trainable_variables, grads):
        w, g = before[v.path], np.array(g)
        m_hat, v_hat = g, g * g  # one step with bias correction
        update = m_hat / (np.sqrt(v_hat) + 1e-6)
        ratio = 1.0
        if v.path.endswith("kernel"):
            update = update + 0.01 * w
            ratio = np.linalg.norm(w) / np.linalg.norm(update)
        np.testing.assert_allclose(np.array(v), w - ratio * 0.1 * update, rtol=1e-5, atol=1e-6)

    x, y = _data(256, seed=3)
    model = _toy()
    opt = make_optimizer(learning_rate=0.1, num_train_steps=16, num_warmup_steps=2, optimizer="lamb")
    losses = _train(model, opt, x, y, micro_batch=32, global_batch=32, strategy=tf.distribute.get_strategy())
    losses += _train(model, opt, x, y, micro_batch=32, global_batch=32, strategy=tf.distribute.get_strategy())
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])


def test_float16_loss_scaling_learns_and_two_replicas_match_one():
    x, y = _data(128, seed=4)
    runs = []
    for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
        with strategy.scope():
            model = _toy()
            opt = make_optimizer(learning_rate=0.01, num_train_steps=16, num_warmup_steps=1, precision="float16")
        runs.append((_train(model, opt, x, y, micro_batch=8, global_batch=8, strategy=strategy), _weights(model)))
    (losses, weights), (losses_2, weights_2) = runs
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    np.testing.assert_allclose(losses_2, losses, rtol=1e-5)
    for got, want in zip(weights_2, weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_non_finite_gradient_skips_the_update():
    model = _toy()
    before = _weights(model)
    opt = AdamWeightDecay(learning_rate=0.1)
    grads = [tf.fill(v.shape, np.inf if i == 0 else 1.0) for i, v in enumerate(model.trainable_variables)]
    opt.apply_gradients(zip(grads, model.trainable_variables))
    for w0, w1 in zip(before, _weights(model)):
        np.testing.assert_array_equal(w0, w1)
    assert all(np.all(np.array(m) == 0) for m in opt._m)
    opt.apply_gradients([(tf.ones_like(v), v) for v in model.trainable_variables])
    assert not np.allclose(_weights(model)[0], before[0])
