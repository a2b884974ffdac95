"""FLOPs per step against the original `flops_computation.py`, run from the peer checkout."""

import pytest

from pretrain.config import config_path, from_hparams
from workflow.flops import block_flops, electra_train_flops_per_step, encoder_forward_flops, rtd_head_flops, train_flops_per_step
from shared_paths import ORIGINAL_ELECTRA, load_peer

PEER = ORIGINAL_ELECTRA / "flops_computation.py"


@pytest.fixture(scope="module")
def original():
    return load_peer(PEER, "original_flops_computation")


class Size:
    def __init__(self, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size):
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size


def _size(h, layers):
    """The original's defaults: one head per 64 units, FFN 4x."""
    return Size(h, layers, max(1, h // 64), 4 * h)


# (name, disc hidden, disc layers, gen hidden, embedding, seq, max predictions, batch, vocab)
CASES = [
    ("small", 256, 12, 64, 128, 128, 20, 128, 30522),
    ("base", 768, 12, 256, 768, 512, 80, 256, 30522),
    ("large", 1024, 24, 256, 1024, 512, 80, 2048, 30522),
    ("koelectra-small", 256, 12, 256, 128, 512, 79, 512, 32200),
]


@pytest.mark.parametrize("name, h_d, l_d, h_g, e, s, n, batch, v", CASES, ids=[c[0] for c in CASES])
def test_agrees_with_original_within_one_percent(original, name, h_d, l_d, h_g, e, s, n, batch, v):
    theirs = original.get_electra_train_flops(h_d, l_d, h_g, l_d, batch, 1, True, e=e, s=s, output_frac=n / s)
    theirs_v = original.TransformerHparams(h_d, l_d, s=s, v=v, e=e, output_frac=n / s).get_train_flops(
        batch, 1, discriminator=True) + original.TransformerHparams(
        h_g, l_d, s=s, v=v, e=e, output_frac=n / s).get_train_flops(batch, 1)
    ours = electra_train_flops_per_step(
        discriminator=_size(h_d, l_d), generator=_size(h_g, l_d), vocab_size=30522, embedding_size=e,
        max_seq_length=s, max_predictions_per_seq=n, batch_size=batch)
    ours_v = electra_train_flops_per_step(
        discriminator=_size(h_d, l_d), generator=_size(h_g, l_d), vocab_size=v, embedding_size=e,
        max_seq_length=s, max_predictions_per_seq=n, batch_size=batch)
    assert ours == pytest.approx(theirs, rel=0.01)
    assert ours_v == pytest.approx(theirs_v, rel=0.01)
    # the only difference is the attention-output LayerNorm, counted per element here
    assert 0 < ours - theirs < 0.002 * theirs


def test_paper_electra_small_total(original):
    """1M steps of ELECTRA-Small as the original script totals them (1.3e18)."""
    ours = 1e6 * electra_train_flops_per_step(
        discriminator=_size(256, 12), generator=_size(64, 12), vocab_size=30522, embedding_size=128,
        max_seq_length=128, max_predictions_per_seq=20, batch_size=128)
    assert ours == pytest.approx(original.MODEL_FLOPS["electra_small"], rel=0.01)
    assert ours == pytest.approx(1.3e18, rel=0.01)


def test_bundled_configs_duck_type_and_backward_multiplier():
    cfg = from_hparams(config_path("base"))
    kwargs = dict(discriminator=cfg.discriminator_dims(), generator=cfg.generator_dims(),
                  vocab_size=cfg.vocab_size, embedding_size=cfg.embedding_size, max_seq_length=cfg.max_seq_length,
                  max_predictions_per_seq=cfg.max_predictions_per_seq, batch_size=cfg.train_batch_size)
    two_x = electra_train_flops_per_step(**kwargs)
    assert electra_train_flops_per_step(**kwargs, backward_multiplier=2.0) == pytest.approx(1.5 * two_x)
    assert 8.0e13 < two_x < 9.0e13  # base at batch 256, seq 512: 8.5e13 (paper total 6.4e19 / 766k steps)


def test_block_flops_by_hand():
    # h=4, 1 head, i=8, s=2: qkv 96+12, scores 16, softmax/dropout/scale 20, values 16, out 32+4,
    # dropout/residual/LN 40; FFN 64+8+64, 64+4, 40
    assert block_flops(hidden_size=4, num_attention_heads=1, intermediate_size=8, seq_length=2) == 480


def test_mlm_only_steps_count_no_discriminator():
    rtd = from_hparams({"vocab_size": 8000}, base=config_path("tiny"))
    mlm = from_hparams({"vocab_size": 8000, "disc_weight": 0.0}, base=config_path("tiny"))
    disc = encoder_forward_flops(rtd.discriminator_dims(), vocab_size=8000, embedding_size=rtd.embedding_size,
                                 seq_length=rtd.max_seq_length)
    disc += rtd.max_seq_length * rtd_head_flops(hidden_size=rtd.hidden_size)
    # forward + backward (the backward counted as one forward, as the original counts it), whole batch
    assert train_flops_per_step(rtd) - train_flops_per_step(mlm) == pytest.approx(2 * rtd.train_batch_size * disc)
