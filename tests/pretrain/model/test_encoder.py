"""Encoder and heads against the reference: Hugging Face PyTorch ELECTRA with the same weights."""
import numpy as np
import pytest
import tensorflow as tf

from pretrain.conversion import hf_format
from pretrain.model.rtd import SpecialIds, build_model
from pretrain.model.sampling import make_noise
from rtd_helpers import nsmc_token_ids, tiny_config

SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)


def _batch(length=24):
    """Two real NSMC reviews as a padded batch, the second with a segment B."""
    a, b = nsmc_token_ids(3)[:2]
    ids = np.zeros((2, length), np.int64)
    seg = np.zeros_like(ids)
    first = [2] + a[:length - 2] + [3]
    second = ([2] + b[:6] + [3] + a[:5] + [3])[:length]
    ids[0, :len(first)] = first
    ids[1, :len(second)] = second
    seg[1, 8:len(second)] = 1
    return ids, (ids != 0).astype(np.int64), seg


def _torch_model(model, cfg, part):
    import torch
    from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    dims = cfg.discriminator_dims() if part == "discriminator" else cfg.generator_dims()
    hf_cfg = ElectraConfig(**{k: v for k, v in hf_format.hf_config(dims, part).items() if k != "architectures"})
    net = (ElectraForPreTraining if part == "discriminator" else ElectraForMaskedLM)(hf_cfg).eval()
    weights = model.discriminator_weights() if part == "discriminator" else model.generator_weights()
    assert sorted(weights) == sorted(hf_format.hf_weight_names(dims, part))
    state = {k: torch.from_numpy(hf_format.to_torch_layout(k, np.asarray(v.numpy()))) for k, v in weights.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing)
    return net


@pytest.mark.parametrize("embedding_size", [32, 64])  # with and without the embedding projection
def test_logits_equal_transformers_electra(embedding_size):
    import torch

    cfg = tiny_config(embedding_size=embedding_size, max_position_embeddings=64)
    tf.keras.utils.set_random_seed(1)
    model = build_model(cfg, SPECIAL)
    ids, mask, seg = _batch()
    ours_d = model.discriminator_logits(ids, mask, seg).numpy()
    ours_g = model.generator_logits(ids, mask, seg).numpy()
    with torch.no_grad():
        tt = [torch.from_numpy(x) for x in (ids, mask, seg)]
        ref_d = _torch_model(model, cfg, "discriminator")(input_ids=tt[0], attention_mask=tt[1], token_type_ids=tt[2]).logits
        ref_g = _torch_model(model, cfg, "generator")(input_ids=tt[0], attention_mask=tt[1], token_type_ids=tt[2]).logits
    real = mask.astype(bool)
    assert ours_d.shape == (2, 24) and ours_g.shape == (2, 24, cfg.vocab_size)
    np.testing.assert_allclose(ours_d[real], ref_d.numpy()[real], atol=2e-4)
    np.testing.assert_allclose(ours_g[real], ref_g.numpy()[real], atol=2e-4)
    assert np.abs(ours_d[real]).max() > 1e-3  # not a trivially zero comparison


def test_initialisation_and_variable_names_for_weight_decay():
    cfg = tiny_config(embedding_size=32)
    tf.keras.utils.set_random_seed(0)
    model = build_model(cfg, SPECIAL)
    emb = model.embeddings.word_embeddings.numpy()
    assert abs(emb.std() - 0.02 * 0.88) < 0.002  # truncated normal(0.02) at 2 sigma has std 0.0176
    assert np.abs(emb).max() <= 0.04 + 1e-6
    paths = [v.path for v in model.trainable_variables]
    assert len(paths) == len({id(v) for v in model.trainable_variables})  # shared embeddings counted once
    from pretrain.model.rtd import checkpoint_variables

    named = checkpoint_variables(model)  # what checkpoints save: every variable once, by name
    assert sorted(id(v) for v in named.values()) == sorted(id(v) for v in model.trainable_variables)
    from pretrain.training.optimization import uses_weight_decay

    decayed = [p for p in paths if uses_weight_decay(p)]
    skipped = [p for p in paths if not uses_weight_decay(p)]
    assert all(p.endswith(("kernel", "embeddings")) for p in decayed)
    assert all(p.endswith(("gamma", "beta", "bias")) for p in skipped)
    n_norms = 1 + 2 * (cfg.num_hidden_layers * 2) + 1  # embeddings, 2 per block x 2 encoders, generator head
    assert sum(p.endswith("gamma") for p in skipped) == n_norms


def test_dropout_only_in_training():
    cfg = tiny_config()
    model = build_model(cfg, SPECIAL)
    ids, mask, seg = _batch()
    a = model.discriminator_logits(ids, mask, seg).numpy()
    np.testing.assert_array_equal(a, model.discriminator_logits(ids, mask, seg).numpy())
    noise = make_noise(7, tf.range(ids.shape[0]), stream=1024)
    b = model.discriminator_logits(ids, mask, seg, noise).numpy()
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(b, model.discriminator_logits(ids, mask, seg, noise).numpy())  # same noise
