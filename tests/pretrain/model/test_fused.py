"""The fused GELU and LayerNorm kernels against the op-by-op formulas, values and gradients."""
import math

import numpy as np
import tensorflow as tf

from pretrain.model import fused


def _value_and_grads(fn, inputs, dy):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = fn(*inputs)
    return y.numpy(), [g.numpy() for g in tape.gradient(y, inputs, dy)]


def test_gelu_is_exact_erf_gelu_with_its_derivative():
    x = tf.constant([[-3.0, -1.0, 0.0, 0.5, 2.0]])
    y, (dx,) = _value_and_grads(fused.gelu, [x], tf.ones_like(x))
    xs = x.numpy()[0]
    want = [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in xs]
    np.testing.assert_allclose(y[0], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(y[0, 2:4], [0.0, 0.3457312306], rtol=1e-6)  # gelu(0.5) by hand
    want_dx = [0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in xs]
    np.testing.assert_allclose(dx[0], want_dx, rtol=1e-6, atol=1e-7)
    assert dx[0, 2] == 0.5  # Phi(0)


def test_gelu_matches_tensorflow_on_a_grid():
    x = tf.random.stateless_normal([64, 96], seed=(1, 2)) * 3
    dy = tf.random.stateless_normal([64, 96], seed=(3, 4))
    y, (dx,) = _value_and_grads(fused.gelu, [x], dy)
    y_tf, (dx_tf,) = _value_and_grads(lambda t: tf.nn.gelu(t, approximate=False), [x], dy)
    np.testing.assert_allclose(y, y_tf, atol=2e-6)
    np.testing.assert_allclose(dx, dx_tf, atol=2e-6)


def test_layer_norm_values_by_hand():
    x = tf.constant([[1.0, 2.0, 3.0, 6.0]])  # mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5
    gamma, beta = tf.constant([1.0, 2.0, 1.0, 0.5]), tf.constant([0.0, 0.0, 1.0, -1.0])
    y = fused.layer_norm(x, gamma, beta, 0.0).numpy()
    xhat = np.array([-2.0, -1.0, 0.0, 3.0]) / math.sqrt(3.5)
    np.testing.assert_allclose(y[0], xhat * [1, 2, 1, 0.5] + [0, 0, 1, -1], rtol=1e-6)


def test_layer_norm_matches_keras_values_and_gradients():
    import keras

    x = tf.random.stateless_normal([3, 5, 16], seed=(5, 6)) * 2 + 1
    dy = tf.random.stateless_normal([3, 5, 16], seed=(7, 8))
    gamma = tf.random.stateless_normal([16], seed=(9, 10))
    beta = tf.random.stateless_normal([16], seed=(11, 12))
    ref = keras.layers.LayerNormalization(epsilon=1e-12)
    ref.build((None, None, 16))
    ref.gamma.assign(gamma)
    ref.beta.assign(beta)
    y, grads = _value_and_grads(lambda a, g, b: fused.layer_norm(a, g, b, 1e-12), [x, gamma, beta], dy)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_ref = ref(x)
    want = [g.numpy() for g in tape.gradient(y_ref, [x, ref.gamma, ref.beta], dy)]
    np.testing.assert_allclose(y, y_ref.numpy(), atol=1e-5)
    for got, ref_grad in zip(grads, want):
        np.testing.assert_allclose(got, ref_grad, rtol=1e-4, atol=1e-4)


def test_sparse_softmax_cross_entropy_by_hand_and_against_tensorflow():
    logits = tf.math.log(tf.constant([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))  # [1, 2, 3] log-probs
    labels = tf.constant([[1, 2]])
    nll, (dlogits,) = _value_and_grads(lambda z: fused.sparse_softmax_cross_entropy(labels, z), [logits + 7.0],
                                       tf.constant([[1.0, 2.0]]))
    np.testing.assert_allclose(nll, [[-math.log(0.25), -math.log(0.8)]], rtol=1e-6)
    np.testing.assert_allclose(dlogits, [[[0.5, -0.75, 0.25], [0.2, 0.2, -0.4]]], atol=1e-6)  # (p - onehot) * dnll

    big = tf.random.stateless_normal([4, 5, 300], seed=(1, 1)) * 5
    ids = tf.random.stateless_uniform([4, 5], seed=(2, 2), maxval=300, dtype=tf.int32)
    weights = tf.random.stateless_uniform([4, 5], seed=(3, 3))
    got = _value_and_grads(lambda z: fused.sparse_softmax_cross_entropy(ids, z), [big], weights)
    want = _value_and_grads(lambda z: tf.nn.sparse_softmax_cross_entropy_with_logits(ids, z), [big], weights)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1][0], want[1][0], atol=1e-6)
