"""FLOPs of ELECTRA pretraining, counted as the original `flops_computation.py` counts them.

Conventions (the original's, so figures compare with the paper's): a multiply-add is 2
FLOPs; embedding lookups are dense one-hot matmuls; GELU 8, softmax 5, LayerNorm 5 and
dropout 4 FLOPs per element; the backward pass costs the same as the forward pass (so a
training step is 2x forward; pass `backward_multiplier=2.0` for the usual 3x count). The
generator's MLM head runs only on the `max_predictions_per_seq` masked positions; the
discriminator's head on every position.

One deliberate difference: the original counts the attention-output LayerNorm as 5 FLOPs
per token instead of 5 per element (a missing `* h`); we count it per element, which moves
totals by well under 1%.
"""
from __future__ import annotations

from typing import Protocol

DROPOUT = 4  # random draw, compare, mask multiply, rescale
LAYER_NORM = 5  # mean, variance (square + sum), scale, shift
GELU = 8  # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
SOFTMAX = 5  # max-subtract, exp, sum, divide


class EncoderSize(Protocol):
    """What FLOPs depend on; `pretrain.config.EncoderDims` has these attributes."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int


def block_flops(*, hidden_size: int, num_attention_heads: int, intermediate_size: int, seq_length: int) -> float:
    """Forward FLOPs of one transformer block, per token."""
    h, i, s, heads = hidden_size, intermediate_size, seq_length, num_attention_heads
    attention = (
        3 * 2 * h * h + 3 * h  # query/key/value projections + biases
        + 2 * h * s  # scores: every token against every token
        + (SOFTMAX + DROPOUT + 1) * s * heads  # softmax, dropout and 1/sqrt(d) scale of the scores
        + 2 * h * s  # weighted average of the values
        + 2 * h * h + h  # output projection + bias
        + (DROPOUT + 1 + LAYER_NORM) * h  # dropout, residual, LayerNorm
    )
    feed_forward = (
        2 * h * i + i + GELU * i  # intermediate dense + bias + GELU
        + 2 * i * h + h  # output dense + bias
        + (DROPOUT + 1 + LAYER_NORM) * h  # dropout, residual, LayerNorm
    )
    return float(attention + feed_forward)


def embedding_flops(*, vocab_size: int, embedding_size: int, hidden_size: int, seq_length: int) -> float:
    """Forward FLOPs of the input embeddings (+ projection when sizes differ), per token."""
    e, h = embedding_size, hidden_size
    flops = (
        2 * e * vocab_size  # word embedding as a one-hot matmul
        + 2 * e * (seq_length + 2)  # position and token-type embeddings, one-hot
        + 2 * e  # adding them
        + (LAYER_NORM + DROPOUT) * e
    )
    if e != h:
        flops += 2 * e * h + h  # embedding projection
    return float(flops)


def mlm_head_flops(*, vocab_size: int, embedding_size: int, hidden_size: int) -> float:
    """Forward FLOPs of the generator's MLM head, per predicted (masked) token."""
    e, v = embedding_size, vocab_size
    return float(2 * hidden_size * e + e + (GELU + LAYER_NORM) * e  # dense -> GELU -> LayerNorm
                 + 2 * e * v + SOFTMAX * v + 2 * v)  # tied output embedding, softmax, target pick


def rtd_head_flops(*, hidden_size: int) -> float:
    """Forward FLOPs of the discriminator's replaced-token head, per token."""
    h = hidden_size
    return float(2 * h * h + h + GELU * h + 2 * h)


def encoder_forward_flops(size: EncoderSize, *, vocab_size: int, embedding_size: int, seq_length: int) -> float:
    """Forward FLOPs of embeddings + all blocks, per example."""
    per_token = size.num_hidden_layers * block_flops(
        hidden_size=size.hidden_size, num_attention_heads=size.num_attention_heads,
        intermediate_size=size.intermediate_size, seq_length=seq_length,
    ) + embedding_flops(vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=size.hidden_size,
                        seq_length=seq_length)
    return per_token * seq_length


def electra_train_flops_per_step(*, discriminator: EncoderSize | None, generator: EncoderSize, vocab_size: int,
                                 embedding_size: int, max_seq_length: int, max_predictions_per_seq: int,
                                 batch_size: int, backward_multiplier: float = 1.0) -> float:
    """FLOPs of one training step (generator + discriminator, forward + backward), whole batch.

    Embeddings are tied, so the generator uses the discriminator's `embedding_size`. `discriminator` None:
    MLM only (disc_weight 0, which does not run the discriminator).
    """
    s = max_seq_length
    disc = 0.0
    if discriminator is not None:
        disc = encoder_forward_flops(discriminator, vocab_size=vocab_size, embedding_size=embedding_size, seq_length=s)
        disc += s * rtd_head_flops(hidden_size=discriminator.hidden_size)
    gen = encoder_forward_flops(generator, vocab_size=vocab_size, embedding_size=embedding_size, seq_length=s)
    gen += max_predictions_per_seq * mlm_head_flops(vocab_size=vocab_size, embedding_size=embedding_size,
                                                    hidden_size=generator.hidden_size)
    return (1.0 + backward_multiplier) * batch_size * (disc + gen)



def train_flops_per_step(cfg) -> float:
    """One training step of a run (a `PretrainConfig`); MLM only when disc_weight is 0 (no discriminator)."""
    return electra_train_flops_per_step(
        discriminator=None if cfg.disc_weight == 0 else cfg.discriminator_dims(), generator=cfg.generator_dims(),
        vocab_size=cfg.vocab_size, embedding_size=cfg.embedding_size, max_seq_length=cfg.max_seq_length,
        max_predictions_per_seq=cfg.max_predictions_per_seq, batch_size=cfg.train_batch_size)
