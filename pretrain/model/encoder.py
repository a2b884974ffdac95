"""The BERT/ELECTRA transformer encoder as Keras 3 layers.

Embeddings (word, position, token type, LayerNorm eps 1e-12, dropout) live in their own
layer so the generator and the discriminator can share one instance, as the original
ties them. `Encoder` takes embedded inputs [B, L, E], projects them to H when E != H,
and runs post-LayerNorm blocks with exact (erf) GELU, as Hugging Face's "gelu".
Variables are named so that weight decay can skip every "LayerNorm" and "bias".

Dropout is on iff a call gets a `sampling.Noise` (training); each dropout site of a pass
draws from its own hash stream, `DROPOUT_SITES` per block after the embeddings' one.
"""
from __future__ import annotations

import math

from foundation.quiet_tf import keras, tf

from pretrain.model import fused
from pretrain.config import EncoderDims
from pretrain.model.sampling import Noise, dropout, substream

LAYER_NORM_EPS = 1e-12
MASK_ADDER = -10000.0  # the original's additive attention mask
DROPOUT_SITES = 3  # per block: attention probabilities, attention output, FFN output


def initializer() -> keras.initializers.Initializer:
    """The original's initialisation: truncated normal, stddev 0.02."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def gelu(x: tf.Tensor) -> tf.Tensor:
    """Exact (erf) GELU, Hugging Face's "gelu", as one fused kernel each way."""
    return fused.gelu(x)


def dense(units: int, name: str, dtype) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=initializer(), name=name, dtype=dtype)


class LayerNorm(keras.layers.LayerNormalization):
    """Keras' LayerNormalization (same variables and names) computed by the fused kernels."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.cast(fused.layer_norm(inputs, self.gamma, self.beta, self.epsilon), self.compute_dtype)


def layer_norm(name: str, dtype) -> LayerNorm:
    return LayerNorm(epsilon=LAYER_NORM_EPS, name=name, dtype=dtype)


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

    def call(self, input_ids: tf.Tensor, segment_ids: tf.Tensor, noise: Noise | None = None) -> tf.Tensor:
        length = tf.shape(input_ids)[1]
        cd = self.compute_dtype
        x = tf.gather(tf.cast(self.word_embeddings, cd), input_ids)  # [B, L, E]
        x += tf.cast(self.position_embeddings, cd)[None, :length]
        x += tf.gather(tf.cast(self.token_type_embeddings, cd), segment_ids)
        return dropout(self.layer_norm(x), noise, self.dims.hidden_dropout_prob)


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
        self.attention_dropout_rate = dims.attention_probs_dropout_prob
        self.hidden_dropout_rate = dims.hidden_dropout_prob
        for layer, width in ((self.query, h), (self.key, h), (self.value, h), (self.attention_output, h),
                             (self.attention_norm, h), (self.intermediate, h),
                             (self.output_dense, dims.intermediate_size), (self.output_norm, h)):
            layer.build((None, None, width))

    def call(self, x: tf.Tensor, attention_bias: tf.Tensor, noise: Noise | None = None) -> tf.Tensor:
        b, length = tf.shape(x)[0], tf.shape(x)[1]

        def heads(t: tf.Tensor) -> tf.Tensor:  # [B, L, H] -> [B, nh, L, dh]
            return tf.transpose(tf.reshape(t, [b, length, self.num_heads, self.head_size]), [0, 2, 1, 3])

        # batched matmuls, not einsums: the einsum kernels ran at a fraction of the GEMM rate;
        # the scale goes on q ([B, L, H], smaller than the scores; exact when sqrt(dh) is a power of 2)
        q = heads(self.query(x) * (1.0 / math.sqrt(self.head_size)))
        k, v = heads(self.key(x)), heads(self.value(x))
        scores = tf.matmul(q, k, transpose_b=True)  # [B, nh, L, L]
        # softmax in float32 under mixed precision (Keras casts the bias input to the compute dtype)
        scores = tf.cast(scores, tf.float32) + tf.cast(attention_bias, tf.float32)
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype)
        probs = dropout(probs, substream(noise, 0), self.attention_dropout_rate)
        context = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])  # [B, L, nh, dh]
        context = tf.reshape(context, [b, length, self.num_heads * self.head_size])
        attended = dropout(self.attention_output(context), substream(noise, 1), self.hidden_dropout_rate)
        x = self.attention_norm(x + attended)
        ffn = self.output_dense(gelu(self.intermediate(x)))  # [B, L, H]
        return self.output_norm(x + dropout(ffn, substream(noise, 2), self.hidden_dropout_rate))


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

    def call(self, embedded: tf.Tensor, input_mask: tf.Tensor, noise: Noise | None = None) -> tf.Tensor:
        """`noise` (training) is the pass's embedding-dropout stream; block i uses the streams after it."""
        x = embedded
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        # [B, 1, 1, L]: 0 for real keys, -10000 for padding (float32, added before softmax)
        bias = (1.0 - tf.cast(input_mask, tf.float32))[:, None, None, :] * MASK_ADDER
        for i, block in enumerate(self.blocks):
            x = block(x, bias, noise=substream(noise, 1 + DROPOUT_SITES * i))
        return x
