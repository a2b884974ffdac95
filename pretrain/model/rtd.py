"""The replaced-token-detection model: mask -> generator -> sampled fake tokens -> discriminator.

Generator and discriminator share the whole embeddings block (word, position, token type,
LayerNorm), as the original ties them. `RtdModel.step` returns per-token *sums and counts*
(`RtdOutputs`); `rtd_loss` turns them into the loss with the denominators the caller gives,
so under a distribution strategy the loss is normalised by global counts and N replicas
give the same gradients as one device on the same global batch.
"""
from __future__ import annotations

from typing import NamedTuple

from foundation.quiet_tf import keras, tf

from pretrain.model import fused, masking, sampling
from pretrain.config import PretrainConfig
from pretrain.model.encoder import Embeddings, Encoder
from pretrain.model.heads import DiscriminatorHead, GeneratorHead

AUC_BINS = 200  # histogram of discriminator probabilities for a streaming, distribution-safe AUC
# hash streams of one step: 1-3 masking and sampling; each encoder pass's dropout sites count
# up from its base (1 + DROPOUT_SITES * layers of them), far below the next base
POSITION_STREAM, KEEP_STREAM, GUMBEL_STREAM = 1, 2, 3
GENERATOR_DROPOUT_STREAM = 1 << 10
DISCRIMINATOR_DROPOUT_STREAM = 2 << 10


class SpecialIds(NamedTuple):
    pad: int
    cls: int
    sep: int
    mask: int


class RtdOutputs(NamedTuple):
    """Sums over one (per-replica) batch; every field is float32."""

    mlm_loss_sum: tf.Tensor  # sum over masked slots of -log p(original)
    mlm_count: tf.Tensor  # number of masked slots
    mlm_correct: tf.Tensor  # generator argmax == original
    disc_loss_sum: tf.Tensor  # sum over real tokens of the sigmoid cross-entropy
    disc_count: tf.Tensor  # number of real tokens
    disc_correct: tf.Tensor  # (logit > 0) == label
    replaced: tf.Tensor  # real tokens whose sampled id differs from the original (positives)
    true_pos: tf.Tensor
    pred_pos: tf.Tensor
    pos_hist: tf.Tensor  # [AUC_BINS] positives by predicted probability
    neg_hist: tf.Tensor  # [AUC_BINS]


class Losses(NamedTuple):
    total: tf.Tensor
    mlm: tf.Tensor
    disc: tf.Tensor


def rtd_loss(out: RtdOutputs, cfg: PretrainConfig, mlm_count: tf.Tensor, disc_count: tf.Tensor) -> Losses:
    """THE loss: gen_weight * MLM + disc_weight * discriminator sigmoid loss over real tokens.

    `mlm_count`/`disc_count` are the denominators (global counts under a strategy).
    """
    mlm = out.mlm_loss_sum / (mlm_count + 1e-6)
    disc = out.disc_loss_sum / (disc_count + 1e-6)
    return Losses(cfg.gen_weight * mlm + cfg.disc_weight * disc, mlm, disc)


def step_key(seed: int, step: tf.Tensor) -> tf.Tensor:
    """The noise key of one training step: distinct per (seed, step)."""
    return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(step, tf.int64)


class RtdModel(keras.Model):
    """ELECTRA generator + discriminator with tied embeddings."""

    def __init__(self, cfg: PretrainConfig, special: SpecialIds, *, dtype=None):
        super().__init__(name="electra", dtype=dtype)
        self.cfg = cfg
        self.special = special
        disc, gen = cfg.discriminator_dims(), cfg.generator_dims()
        self.embeddings = Embeddings(disc, dtype=dtype)
        self.generator = Encoder(gen, dtype=dtype, name="generator")
        self.discriminator = Encoder(disc, dtype=dtype, name="discriminator")
        self.generator_head = GeneratorHead(gen.hidden_size, disc.embedding_size, disc.vocab_size, dtype=dtype)
        self.discriminator_head = DiscriminatorHead(disc.hidden_size, dtype=dtype)
        self.built = True

    # --- the training computation -------------------------------------------------------
    def mask(self, input_ids: tf.Tensor, input_mask: tf.Tensor, *, key: tf.Tensor, rows: tf.Tensor) -> masking.Masked:
        """Choose and [MASK] the generator's targets; `rows` [B] are the global example ids.

        Cheap, so a strategy can run it first to all-reduce the token counts (`loss denominators`).
        """
        cfg, n = self.cfg, self.cfg.max_predictions_per_seq
        length = input_ids.shape[1]
        pos_noise = sampling.hash_uniform(key, rows, (n,) if cfg.masking_with_replacement else (length,),
                                          stream=POSITION_STREAM)
        return masking.mask_tokens(
            tf.cast(input_ids, tf.int32), input_mask, mask_id=self.special.mask,
            special_ids=(self.special.pad, self.special.cls, self.special.sep, self.special.mask),
            mask_prob=cfg.mask_prob, n=n, position_noise=pos_noise,
            keep_noise=sampling.hash_uniform(key, rows, (n,), stream=KEEP_STREAM),
            with_replacement=cfg.masking_with_replacement)

    def step(self, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor, masked: masking.Masked, *,
             key: tf.Tensor, rows: tf.Tensor, training: bool = True) -> RtdOutputs:
        """One RTD forward pass on [B, L] int inputs masked by `self.mask`; returns summed outputs.

        With `training`, dropout draws from the hash of (key, rows), like the masks and samples.
        """
        cfg, n = self.cfg, self.cfg.max_predictions_per_seq
        input_ids = tf.cast(input_ids, tf.int32)
        input_mask = tf.cast(input_mask, tf.int32)
        segment_ids = tf.cast(segment_ids, tf.int32)

        gen_noise = sampling.make_noise(key, rows, GENERATOR_DROPOUT_STREAM) if training else None
        disc_noise = sampling.make_noise(key, rows, DISCRIMINATOR_DROPOUT_STREAM) if training else None

        # generator: MLM on the N masked slots only
        gen_hidden = self.generator(self.embeddings(masked.input_ids, segment_ids, noise=gen_noise),
                                    input_mask, noise=gen_noise)  # [B, L, Hg]
        gen_logits = self.generator_head(masking.gather_positions(gen_hidden, masked.positions),
                                         self.embeddings.word_embeddings)  # [B, N, V] float32
        w = masked.weights
        nll = fused.sparse_softmax_cross_entropy(masked.original_ids, gen_logits)  # [B, N]
        mlm_correct = tf.cast(tf.equal(tf.argmax(gen_logits, -1, output_type=tf.int32), masked.original_ids),
                              tf.float32)

        real = tf.cast(input_mask, tf.float32)
        mlm = dict(mlm_loss_sum=tf.reduce_sum(nll * w), mlm_count=tf.reduce_sum(w),
                   mlm_correct=tf.reduce_sum(mlm_correct * w), disc_count=tf.reduce_sum(real))
        if cfg.disc_weight == 0:
            # MLM only (BERT's objective, the control of docs/payoff.md): no sampling, no discriminator, so a
            # step costs the generator alone; the discriminator's sums are zero (no replaced tokens, no AUC)
            zero, bins = tf.zeros([], tf.float32), tf.zeros([AUC_BINS], tf.float32)
            return RtdOutputs(**mlm, disc_loss_sum=zero, disc_correct=zero, replaced=zero, true_pos=zero,
                              pred_pos=zero, pos_hist=bins, neg_hist=bins)

        # fake data: sampled tokens at every chosen slot (also the 15% kept ones), as the original
        vocab = gen_logits.shape[-1]
        sampled = sampling.gumbel_max_sample(
            gen_logits, sampling.hash_uniform(key, rows, (n, vocab), stream=GUMBEL_STREAM), cfg.temperature)  # [B, N]
        fake_ids = masking.scatter_update(masked.input_ids, sampled, masked.positions, w)
        labels = real * tf.cast(tf.not_equal(fake_ids, input_ids), tf.float32)  # [B, L]

        disc_hidden = self.discriminator(self.embeddings(fake_ids, segment_ids, noise=disc_noise), input_mask,
                                         noise=disc_noise)
        disc_logits = self.discriminator_head(disc_hidden)  # [B, L] float32
        xent = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=disc_logits)
        pred = tf.cast(disc_logits > 0, tf.float32)
        prob_bin = tf.clip_by_value(tf.cast(tf.sigmoid(disc_logits) * AUC_BINS, tf.int32), 0, AUC_BINS - 1)
        flat_bin = tf.reshape(prob_bin, [-1])
        return RtdOutputs(
            **mlm, disc_loss_sum=tf.reduce_sum(xent * real),
            disc_correct=tf.reduce_sum(tf.cast(tf.equal(pred, labels), tf.float32) * real),
            replaced=tf.reduce_sum(labels), true_pos=tf.reduce_sum(pred * labels),
            pred_pos=tf.reduce_sum(pred * real),
            pos_hist=tf.math.unsorted_segment_sum(tf.reshape(labels, [-1]), flat_bin, AUC_BINS),
            neg_hist=tf.math.unsorted_segment_sum(tf.reshape(real - labels, [-1]), flat_bin, AUC_BINS),
        )

    def call(self, inputs):
        """Keras entry (builds the model): discriminator logits of (input_ids, input_mask, segment_ids)."""
        input_ids, input_mask, segment_ids = inputs
        return self.discriminator_logits(input_ids, input_mask, segment_ids)

    # --- inference, for exactness tests and export --------------------------------------
    def discriminator_logits(self, input_ids, input_mask, segment_ids,
                             noise: sampling.Noise | None = None) -> tf.Tensor:
        """[B, L] float32 replaced-token logits (dropout off unless `noise` is given)."""
        hidden = self.discriminator(self.embeddings(tf.cast(input_ids, tf.int32), tf.cast(segment_ids, tf.int32),
                                                    noise=noise), input_mask, noise=noise)
        return self.discriminator_head(hidden)

    def generator_logits(self, input_ids, input_mask, segment_ids) -> tf.Tensor:
        """[B, L, V] float32 MLM logits at every position (dropout off)."""
        hidden = self.generator(self.embeddings(tf.cast(input_ids, tf.int32), tf.cast(segment_ids, tf.int32)),
                                input_mask)
        return self.generator_head(hidden, self.embeddings.word_embeddings)

    # --- weights by Hugging Face names (TF layout: dense kernels [in, out]) ------------
    def _electra_weights(self, encoder: Encoder) -> dict:
        e = self.embeddings
        out = {
            "electra.embeddings.word_embeddings.weight": e.word_embeddings,
            "electra.embeddings.position_embeddings.weight": e.position_embeddings,
            "electra.embeddings.token_type_embeddings.weight": e.token_type_embeddings,
            "electra.embeddings.LayerNorm.weight": e.layer_norm.gamma,
            "electra.embeddings.LayerNorm.bias": e.layer_norm.beta,
        }
        if encoder.embeddings_project is not None:
            out["electra.embeddings_project.weight"] = encoder.embeddings_project.kernel
            out["electra.embeddings_project.bias"] = encoder.embeddings_project.bias
        for i, blk in enumerate(encoder.blocks):
            p = f"electra.encoder.layer.{i}."
            parts = {
                "attention.self.query": blk.query, "attention.self.key": blk.key, "attention.self.value": blk.value,
                "attention.output.dense": blk.attention_output, "intermediate.dense": blk.intermediate,
                "output.dense": blk.output_dense,
            }
            for name, layer in parts.items():
                out[p + name + ".weight"] = layer.kernel
                out[p + name + ".bias"] = layer.bias
            for name, norm in (("attention.output.LayerNorm", blk.attention_norm), ("output.LayerNorm", blk.output_norm)):
                out[p + name + ".weight"] = norm.gamma
                out[p + name + ".bias"] = norm.beta
        return out

    def discriminator_weights(self) -> dict:
        """Variables keyed by `ElectraForPreTraining` state-dict names."""
        out = self._electra_weights(self.discriminator)
        h = self.discriminator_head
        out.update({
            "discriminator_predictions.dense.weight": h.dense.kernel,
            "discriminator_predictions.dense.bias": h.dense.bias,
            "discriminator_predictions.dense_prediction.weight": h.dense_prediction.kernel,
            "discriminator_predictions.dense_prediction.bias": h.dense_prediction.bias,
        })
        return out

    def generator_weights(self) -> dict:
        """Variables keyed by `ElectraForMaskedLM` state-dict names (lm_head.weight = tied embeddings)."""
        out = self._electra_weights(self.generator)
        h = self.generator_head
        out.update({
            "generator_predictions.dense.weight": h.dense.kernel,
            "generator_predictions.dense.bias": h.dense.bias,
            "generator_predictions.LayerNorm.weight": h.layer_norm.gamma,
            "generator_predictions.LayerNorm.bias": h.layer_norm.beta,
            "generator_lm_head.weight": self.embeddings.word_embeddings,
            "generator_lm_head.bias": h.output_bias,
        })
        return out

    def discriminator_from_generator(self) -> int:
        """ELECTRA's two-stage start (paper, section 3.2): the discriminator's encoder takes the generator's
        values (the embeddings are shared already), its head is left as it is, so replaced-token detection
        starts from an MLM-trained encoder. The caller checks the two are the same size. Returns the count."""
        generator = self.generator_weights()
        copied = 0
        for name, variable in self.discriminator_weights().items():
            source = generator.get(name)
            if source is not None and source is not variable:
                variable.assign(source)
                copied += 1
        return copied


def checkpoint_variables(model: RtdModel) -> dict:
    """Every variable of the model once, by stable readable name (the checkpoint's object graph).

    Named explicitly rather than through Keras' layer tracking, which does not expose
    sublayers (lists of blocks, nested layers) to `tf.train.Checkpoint`.
    """
    out, seen = {}, set()
    for part, weights in (("discriminator", model.discriminator_weights()), ("generator", model.generator_weights())):
        for name, var in weights.items():
            if id(var) not in seen:
                seen.add(id(var))
                out[f"{part}.{name}"] = var
    return out


def special_ids(vocab: list[str]) -> SpecialIds:
    index = {tok: i for i, tok in enumerate(vocab)}
    return SpecialIds(pad=index["[PAD]"], cls=index["[CLS]"], sep=index["[SEP]"], mask=index["[MASK]"])


def build_model(cfg: PretrainConfig, special: SpecialIds, dtype=None) -> RtdModel:
    """A model with all variables created (every layer builds in its constructor), ready to restore into."""
    return RtdModel(cfg, special, dtype=dtype)
