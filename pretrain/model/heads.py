"""The two prediction heads on top of the encoders.

Generator: dense(H_gen -> E) -> GELU -> LayerNorm -> tied word embeddings + bias, applied only
to the N masked positions (as the original), so the [.., V] product is [B, N, V], not [B, L, V].
Discriminator: dense(H -> H) -> GELU -> dense(1), one logit per token.
"""
from __future__ import annotations

from foundation.quiet_tf import keras, tf

from pretrain.model.encoder import dense, gelu, layer_norm


class GeneratorHead(keras.layers.Layer):
    """Hidden states [B, N, H_gen] and the word embeddings [V, E] -> float32 logits [B, N, V]."""

    def __init__(self, hidden_size: int, embedding_size: int, vocab_size: int, *, dtype=None,
                 name: str = "generator_predictions"):
        super().__init__(name=name, dtype=dtype)
        self.dense = dense(embedding_size, "dense", dtype)
        self.dense.build((None, None, hidden_size))
        self.layer_norm = layer_norm("LayerNorm", dtype)
        self.layer_norm.build((None, None, embedding_size))
        self.output_bias = self.add_weight(shape=(vocab_size,), initializer="zeros", name="output_bias")

    def call(self, hidden: tf.Tensor, word_embeddings: tf.Tensor) -> tf.Tensor:
        x = self.layer_norm(gelu(self.dense(hidden)))  # [B, N, E]
        b, n, e = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        # one GEMM against the transposed table (no einsum, which copied the [V, E] table)
        logits = tf.matmul(tf.reshape(x, [b * n, e]), tf.cast(word_embeddings, x.dtype), transpose_b=True)
        logits = tf.reshape(logits, [b, n, -1])  # [B, N, V]
        return tf.cast(logits, tf.float32) + tf.cast(self.output_bias, tf.float32)


class DiscriminatorHead(keras.layers.Layer):
    """Hidden states [B, L, H] -> float32 logits [B, L] (positive = replaced)."""

    def __init__(self, hidden_size: int, *, dtype=None, name: str = "discriminator_predictions"):
        super().__init__(name=name, dtype=dtype)
        self.dense = dense(hidden_size, "dense", dtype)
        self.dense.build((None, None, hidden_size))
        self.dense_prediction = dense(1, "dense_prediction", dtype)
        self.dense_prediction.build((None, None, hidden_size))

    def call(self, hidden: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.squeeze(self.dense_prediction(gelu(self.dense(hidden))), -1), tf.float32)
