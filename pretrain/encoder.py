"""The BERT/ELECTRA transformer encoder as Keras 3 layers.

Embeddings (word, position, token type, LayerNorm eps 1e-12, dropout) live in their own
layer so the generator and the discriminator can share one instance, as the original
ties them. `Encoder` takes embedded inputs [B, L, E], projects them to H when E != H,
and runs post-LayerNorm blocks with exact (erf) GELU, as Hugging Face's "gelu".
Variables are named so that weight decay can skip every "LayerNorm" and "bias".
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from pretrain.config import EncoderDims

LAYER_NORM_EPS = 1e-12
MASK_ADDER = -10000.0  # the original's additive attention mask


def initializer() -> keras.initializers.Initializer:
    """The original's initialisation: truncated normal, stddev 0.02."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def gelu(x: tf.Tensor) -> tf.Tensor:
    return keras.activations.gelu(x, approximate=False)


def dense(units: int, name: str, dtype) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=initializer(), name=name, dtype=dtype)


def layer_norm(name: str, dtype) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPS, name=name, dtype=dtype)


class Embeddings(keras.layers.Layer):
    """Token + position + token-type embeddings -> LayerNorm -> dropout: [B, L] ids -> [B, L, E]."""

    def __init__(self, dims: EncoderDims, *, dtype=None, name: str = "embeddings"):
        super().__init__(name=name, dtype=dtype)
        self.dims = dims
        e = dims.embedding_size
        self.word_embeddings = self.add_weight(
            shape=(dims.vocab_size, e), initializer=initializer(), name="word_embeddings")
        self.position_embeddings = self.add_weight(
            shape=(dims.max_position_embeddings, e), initializer=initializer(), name="position_embeddings")
        self.token_type_embeddings = self.add_weight(
            shape=(dims.type_vocab_size, e), initializer=initializer(), name="token_type_embeddings")
        self.layer_norm = layer_norm("LayerNorm", dtype)
        self.layer_norm.build((None, None, e))
        self.dropout = keras.layers.Dropout(dims.hidden_dropout_prob, dtype=dtype)

    def call(self, input_ids: tf.Tensor, segment_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        length = tf.shape(input_ids)[1]
        cd = self.compute_dtype
        x = tf.gather(tf.cast(self.word_embeddings, cd), input_ids)  # [B, L, E]
        x += tf.cast(self.position_embeddings, cd)[None, :length]
        x += tf.gather(tf.cast(self.token_type_embeddings, cd), segment_ids)
        return self.dropout(self.layer_norm(x), training=training)


class TransformerBlock(keras.layers.Layer):
    """One post-LN block: x + attention -> LayerNorm -> x + FFN(GELU) -> LayerNorm. [B, L, H] -> [B, L, H]."""

    def __init__(self, dims: EncoderDims, *, dtype=None, name: str):
        super().__init__(name=name, dtype=dtype)
        h = dims.hidden_size
        self.num_heads = dims.num_attention_heads
        self.head_size = h // dims.num_attention_heads
        self.query = dense(h, "query", dtype)
        self.key = dense(h, "key", dtype)
        self.value = dense(h, "value", dtype)
        self.attention_output = dense(h, "attention_output", dtype)
        self.attention_norm = layer_norm("attention_LayerNorm", dtype)
        self.intermediate = dense(dims.intermediate_size, "intermediate", dtype)
        self.output_dense = dense(h, "output", dtype)
        self.output_norm = layer_norm("output_LayerNorm", dtype)
        self.attention_dropout = keras.layers.Dropout(dims.attention_probs_dropout_prob, dtype=dtype)
        self.hidden_dropout = keras.layers.Dropout(dims.hidden_dropout_prob, dtype=dtype)
        for layer, width in ((self.query, h), (self.key, h), (self.value, h), (self.attention_output, h),
                             (self.attention_norm, h), (self.intermediate, h),
                             (self.output_dense, dims.intermediate_size), (self.output_norm, h)):
            layer.build((None, None, width))

    def call(self, x: tf.Tensor, attention_bias: tf.Tensor, training: bool = False) -> tf.Tensor:
        b, length = tf.shape(x)[0], tf.shape(x)[1]

        def heads(t: tf.Tensor) -> tf.Tensor:
            return tf.reshape(t, [b, length, self.num_heads, self.head_size])  # [B, L, nh, dh]

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = tf.einsum("bqhd,bkhd->bhqk", q, k) * (1.0 / math.sqrt(self.head_size))  # [B, nh, L, L]
        # softmax in float32 under mixed precision (Keras casts the bias input to the compute dtype)
        scores = tf.cast(scores, tf.float32) + tf.cast(attention_bias, tf.float32)
        probs = self.attention_dropout(tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype), training=training)
        context = tf.reshape(tf.einsum("bhqk,bkhd->bqhd", probs, v), [b, length, self.num_heads * self.head_size])
        x = self.attention_norm(x + self.hidden_dropout(self.attention_output(context), training=training))
        ffn = self.output_dense(gelu(self.intermediate(x)))  # [B, L, H]
        return self.output_norm(x + self.hidden_dropout(ffn, training=training))


class Encoder(keras.layers.Layer):
    """Embedded inputs [B, L, E] and the padding mask [B, L] -> hidden states [B, L, H]."""

    def __init__(self, dims: EncoderDims, *, dtype=None, name: str):
        super().__init__(name=name, dtype=dtype)
        self.dims = dims
        self.embeddings_project = None
        if dims.embedding_size != dims.hidden_size:
            self.embeddings_project = dense(dims.hidden_size, "embeddings_project", dtype)
            self.embeddings_project.build((None, None, dims.embedding_size))
        self.blocks = [TransformerBlock(dims, dtype=dtype, name=f"layer_{i}") for i in range(dims.num_hidden_layers)]

    def call(self, embedded: tf.Tensor, input_mask: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = embedded
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        # [B, 1, 1, L]: 0 for real keys, -10000 for padding (float32, added before softmax)
        bias = (1.0 - tf.cast(input_mask, tf.float32))[:, None, None, :] * MASK_ADDER
        for block in self.blocks:
            x = block(x, bias, training=training)
        return x
