"""hf_format: config.json dicts, weight names and shapes, the TF1 name map, the transpose rule.

Checked against real `transformers` models built from the dicts, not against a copy of them.
"""
import dataclasses

import numpy as np
import pytest
import torch
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from foundation.errors import UserError
from pretrain import config as pconfig
from pretrain.conversion import hf_format

TINY = pconfig.from_hparams(pconfig.config_path("tiny"))
HF_CLASS = {"discriminator": ElectraForPreTraining, "generator": ElectraForMaskedLM}


def _dims(cfg, part):
    return cfg.discriminator_dims() if part == "discriminator" else cfg.generator_dims()


def test_configs_are_derived_from_the_training_config():
    disc = hf_format.hf_config(TINY.discriminator_dims(), "discriminator")
    gen = hf_format.hf_config(TINY.generator_dims(), "generator")
    assert disc["architectures"] == ["ElectraForPreTraining"]
    assert gen["architectures"] == ["ElectraForMaskedLM"]
    # tiny.json: embedding 32, hidden 64, 2 layers, 2 heads, FFN 128, generator_hidden_size 0.5
    assert (disc["embedding_size"], disc["hidden_size"], disc["num_attention_heads"], disc["intermediate_size"]) == (
        32, 64, 2, 128)
    # generator: hidden 0.5 * 64, FFN 4 * hidden, one head per 64 units (at least one), shared embeddings
    assert (gen["embedding_size"], gen["hidden_size"], gen["num_attention_heads"], gen["intermediate_size"]) == (
        32, 32, 1, 128)
    for d in (disc, gen):
        assert (d["vocab_size"], d["max_position_embeddings"], d["type_vocab_size"]) == (32200, 64, 2)
        assert (d["hidden_act"], d["layer_norm_eps"], d["num_hidden_layers"]) == ("gelu", 1e-12, 2)
        ElectraConfig(**d)  # transformers accepts every key


@pytest.mark.parametrize("part", hf_format.PARTS)
@pytest.mark.parametrize(
    "hparams", [{}, {"generator_hidden_size": 0.25}, {"embedding_size": 64, "generator_hidden_size": 1.0}])
def test_names_and_shapes_match_transformers(part, hparams):
    cfg = pconfig.from_hparams({**dataclasses.asdict(TINY), "vocab_size": 50, **hparams})
    dims = _dims(cfg, part)
    model = HF_CLASS[part](ElectraConfig(**hf_format.hf_config(dims, part)))
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert hf_format.hf_weight_names(dims, part) == list(state)
    assert hf_format.hf_weight_shapes(dims, part) == state
    has_project = "electra.embeddings_project.weight" in state
    assert has_project == (dims.embedding_size != dims.hidden_size)


def test_transpose_rule_reproduces_torch_linear_and_keeps_embeddings():
    dims = dataclasses.replace(TINY.discriminator_dims(), vocab_size=50)
    torch.manual_seed(0)
    model = ElectraForPreTraining(ElectraConfig(**hf_format.hf_config(dims, "discriminator")))
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((3, dims.hidden_size)).astype(np.float32)
    name = "discriminator_predictions.dense.weight"
    kernel = hf_format.to_tf_layout(name, state[name])  # [in, out]
    want = model.discriminator_predictions.dense(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(x @ kernel + state["discriminator_predictions.dense.bias"], want, atol=1e-5)
    np.testing.assert_array_equal(hf_format.to_torch_layout(name, kernel), state[name])
    table = "electra.embeddings.word_embeddings.weight"
    assert hf_format.to_tf_layout(table, state[table]).shape == (50, dims.embedding_size)
    assert not hf_format.is_linear_weight("electra.encoder.layer.1.output.LayerNorm.weight")
    assert not hf_format.is_linear_weight("generator_lm_head.weight")
    assert hf_format.is_linear_weight("electra.embeddings_project.weight")


def test_tf1_names_are_the_original_layout():
    disc = hf_format.tf1_name_map(TINY.discriminator_dims(), "discriminator")
    gen_with_projection = pconfig.from_hparams({**dataclasses.asdict(TINY), "generator_hidden_size": 0.25})
    gen = hf_format.tf1_name_map(gen_with_projection.generator_dims(), "generator")
    # spelled as google-research/electra's modeling.py and run_pretraining.py create them
    assert disc["electra.embeddings.word_embeddings.weight"] == "electra/embeddings/word_embeddings"
    assert disc["electra.embeddings.LayerNorm.weight"] == "electra/embeddings/LayerNorm/gamma"
    assert disc["electra.embeddings_project.bias"] == "electra/embeddings_project/bias"
    assert disc["electra.encoder.layer.0.attention.self.query.weight"] == (
        "electra/encoder/layer_0/attention/self/query/kernel")
    assert disc["electra.encoder.layer.1.attention.output.LayerNorm.bias"] == (
        "electra/encoder/layer_1/attention/output/LayerNorm/beta")
    assert disc["electra.encoder.layer.1.output.dense.weight"] == "electra/encoder/layer_1/output/dense/kernel"
    assert disc["discriminator_predictions.dense.weight"] == "discriminator_predictions/dense/kernel"
    assert disc["discriminator_predictions.dense_prediction.bias"] == "discriminator_predictions/dense_1/bias"
    # the generator shares the discriminator's embedding tables, has its own encoder
    assert gen["electra.embeddings.position_embeddings.weight"] == "electra/embeddings/position_embeddings"
    assert gen["electra.embeddings_project.weight"] == "generator/embeddings_project/kernel"
    assert gen["electra.encoder.layer.0.intermediate.dense.bias"] == "generator/encoder/layer_0/intermediate/dense/bias"
    assert gen["generator_predictions.LayerNorm.weight"] == "generator_predictions/LayerNorm/gamma"
    assert gen["generator_predictions.dense.weight"] == "generator_predictions/dense/kernel"
    assert gen["generator_lm_head.bias"] == "generator_predictions/output_bias"
    assert gen["generator_lm_head.weight"] == "electra/embeddings/word_embeddings"
    # one TF1 variable per weight, apart from the tied output matrix
    assert len(set(disc.values())) == len(disc)
    assert len(set(gen.values())) == len(gen) - 1


def test_check_hf_config_names_the_differing_key():
    dims = TINY.discriminator_dims()
    good = hf_format.hf_config(dims, "discriminator")
    hf_format.check_hf_config(good, dims, "x/config.json")
    with pytest.raises(UserError, match=r"x/config.json: num_hidden_layers is 3 but the model being trained has 2"):
        hf_format.check_hf_config({**good, "num_hidden_layers": 3}, dims, "x/config.json")
    missing_embedding = {k: v for k, v in good.items() if k != "embedding_size"}
    with pytest.raises(UserError, match=r"embedding_size is 64 .* has 32"):
        hf_format.check_hf_config(missing_embedding, dims, "x/config.json")
