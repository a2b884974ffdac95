"""The three weight layouts of an ELECTRA model, and how they map onto each other.

- Hugging Face (PyTorch): `ElectraForPreTraining` / `ElectraForMaskedLM` state-dict names,
  linear weights `[out, in]`.
- This project (TF2): the same names (`model.discriminator_weights()`), TF layout: dense
  kernels `[in, out]`.
- google-research ELECTRA (TF1 checkpoints, as released by KoELECTRA and KcELECTRA):
  `electra/encoder/layer_0/attention/self/query/kernel`, ..., TF layout. The generator
  shares the discriminator's embedding tables (`electra/embeddings/...`) and has its own
  encoder under `generator/`.

Everything here is pure (names, shapes, dicts); no TensorFlow, no torch. `config.json`
contents are derived from the training configuration, never typed by hand: the classic
converter failures are a generator exported with the discriminator's sizes and a missing
`embedding_size`.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Mapping

import numpy as np

from foundation.errors import UserError
from pretrain.config import EncoderDims

Part = Literal["discriminator", "generator"]
PARTS: tuple[Part, ...] = ("discriminator", "generator")
ARCHITECTURE: dict[Part, str] = {"discriminator": "ElectraForPreTraining", "generator": "ElectraForMaskedLM"}
TIED_WEIGHT = "generator_lm_head.weight"  # is the word embedding table; not stored in safetensors


# Fixed by the architecture (the original's BertConfig defaults), not by hparams.
HIDDEN_ACT = "gelu"  # exact erf GELU in the original, the "gelu" of transformers
LAYER_NORM_EPS = 1e-12
INITIALIZER_RANGE = 0.02
_SIZE_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "max_position_embeddings", "type_vocab_size")


def hf_config(dims: EncoderDims, part: Part, *, pad_token_id: int = 0) -> dict:
    """The `config.json` dict for one exported network, every size taken from `dims`."""
    return {
        "architectures": [ARCHITECTURE[part]],
        "model_type": "electra",
        **dataclasses.asdict(dims),
        "hidden_act": HIDDEN_ACT,
        "layer_norm_eps": LAYER_NORM_EPS,
        "initializer_range": INITIALIZER_RANGE,
        "pad_token_id": pad_token_id,
        "summary_type": "first",
        "summary_use_proj": True,
        "summary_activation": "gelu",
        "summary_last_dropout": 0.1,
        "tie_word_embeddings": True,
    }


def check_hf_config(found: Mapping, expected: EncoderDims, source: str) -> None:
    """Raise `UserError` naming the first size or function in `found` (a config.json) that differs."""
    want = {**{k: getattr(expected, k) for k in _SIZE_KEYS}, "hidden_act": HIDDEN_ACT, "layer_norm_eps": LAYER_NORM_EPS}
    defaults = {"embedding_size": found.get("hidden_size"), "type_vocab_size": 2, "hidden_act": "gelu",
                "layer_norm_eps": 1e-12}  # transformers' ElectraConfig defaults for absent keys
    for key, value in want.items():
        got = found.get(key, defaults.get(key))
        if got != value:
            raise UserError(f"{source}: {key} is {got!r} but the model being trained has {value!r}")


def hf_weight_names(dims: EncoderDims, part: Part) -> list[str]:
    """Every weight name in the state dict of the Hugging Face model for `part`, in order."""
    names = [f"electra.embeddings.{t}_embeddings.weight" for t in ("word", "position", "token_type")]
    names += ["electra.embeddings.LayerNorm.weight", "electra.embeddings.LayerNorm.bias"]
    if dims.embedding_size != dims.hidden_size:
        names += ["electra.embeddings_project.weight", "electra.embeddings_project.bias"]
    for i in range(dims.num_hidden_layers):
        layer = f"electra.encoder.layer.{i}"
        for sub in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                    "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
            names += [f"{layer}.{sub}.weight", f"{layer}.{sub}.bias"]
    if part == "discriminator":
        for sub in ("dense", "dense_prediction"):
            names += [f"discriminator_predictions.{sub}.weight", f"discriminator_predictions.{sub}.bias"]
    else:
        for sub in ("LayerNorm", "dense"):
            names += [f"generator_predictions.{sub}.weight", f"generator_predictions.{sub}.bias"]
        names += [TIED_WEIGHT, "generator_lm_head.bias"]
    return names


def hf_weight_shapes(dims: EncoderDims, part: Part) -> dict[str, tuple[int, ...]]:
    """The PyTorch-layout shape of every weight `hf_weight_names` lists."""
    V, E, H, I = dims.vocab_size, dims.embedding_size, dims.hidden_size, dims.intermediate_size
    fixed = {
        "electra.embeddings.word_embeddings.weight": (V, E),
        "electra.embeddings.position_embeddings.weight": (dims.max_position_embeddings, E),
        "electra.embeddings.token_type_embeddings.weight": (dims.type_vocab_size, E),
        "electra.embeddings.LayerNorm.weight": (E,),
        "electra.embeddings.LayerNorm.bias": (E,),
        "electra.embeddings_project.weight": (H, E),
        "electra.embeddings_project.bias": (H,),
        "discriminator_predictions.dense.weight": (H, H),
        "discriminator_predictions.dense.bias": (H,),
        "discriminator_predictions.dense_prediction.weight": (1, H),
        "discriminator_predictions.dense_prediction.bias": (1,),
        "generator_predictions.dense.weight": (E, H),
        "generator_predictions.dense.bias": (E,),
        "generator_predictions.LayerNorm.weight": (E,),
        "generator_predictions.LayerNorm.bias": (E,),
        TIED_WEIGHT: (V, E),
        "generator_lm_head.bias": (V,),
    }
    per_layer = {
        "intermediate.dense.weight": (I, H),
        "intermediate.dense.bias": (I,),
        "output.dense.weight": (H, I),
    }
    shapes = {}
    for name in hf_weight_names(dims, part):
        if name in fixed:
            shapes[name] = fixed[name]
            continue
        sub = name.split(".", 4)[4]  # electra.encoder.layer.<i>.<sub>
        shapes[name] = per_layer.get(sub, (H, H) if sub.endswith("weight") and "LayerNorm" not in sub else (H,))
    return shapes


def is_linear_weight(hf_name: str) -> bool:
    """True for `nn.Linear` weights, which PyTorch stores `[out, in]` and TF `[in, out]`."""
    return (
        hf_name.endswith(".weight")
        and "LayerNorm" not in hf_name
        and not hf_name.endswith("_embeddings.weight")
        and hf_name != TIED_WEIGHT
    )


def to_torch_layout(hf_name: str, array: np.ndarray) -> np.ndarray:
    """A TF-layout weight in the layout a PyTorch state dict holds (a contiguous copy)."""
    return np.ascontiguousarray(array.T if is_linear_weight(hf_name) else array)


def to_tf_layout(hf_name: str, array: np.ndarray) -> np.ndarray:
    """A PyTorch-layout weight in TF layout: the transpose rule is its own inverse."""
    return to_torch_layout(hf_name, array)


_TF1_SUBLAYER = {
    "attention.self.query": "attention/self/query",
    "attention.self.key": "attention/self/key",
    "attention.self.value": "attention/self/value",
    "attention.output.dense": "attention/output/dense",
    "attention.output.LayerNorm": "attention/output/LayerNorm",
    "intermediate.dense": "intermediate/dense",
    "output.dense": "output/dense",
    "output.LayerNorm": "output/LayerNorm",
}
_TF1_HEADS = {
    "discriminator_predictions.dense": "discriminator_predictions/dense",
    "discriminator_predictions.dense_prediction": "discriminator_predictions/dense_1",
    "generator_predictions.dense": "generator_predictions/dense",
    "generator_predictions.LayerNorm": "generator_predictions/LayerNorm",
}


def _tf1_leaf(module: str, param: str) -> str:
    """TF1 variable leaf name: dense `kernel`/`bias`, LayerNorm `gamma`/`beta`."""
    if module.endswith("LayerNorm"):
        return {"weight": "gamma", "bias": "beta"}[param]
    return {"weight": "kernel", "bias": "bias"}[param]


def tf1_name(hf_name: str, part: Part) -> str:
    """The google-research ELECTRA (TF1) variable holding the weight `hf_name` of `part`.

    The original trains with `untied_generator=True`, `untied_generator_embeddings=False`:
    both networks read `electra/embeddings/*`; the generator's projection and encoder live
    under `generator/`, its LM head bias is `generator_predictions/output_bias`, and its
    output matrix is the word embedding table.
    """
    scope = "electra" if part == "discriminator" else "generator"
    if hf_name == TIED_WEIGHT:
        return "electra/embeddings/word_embeddings"
    if hf_name == "generator_lm_head.bias":
        return "generator_predictions/output_bias"
    module, param = hf_name.rsplit(".", 1)
    if module.startswith("electra.embeddings."):
        table = module[len("electra.embeddings."):]
        if table == "LayerNorm":
            return f"electra/embeddings/LayerNorm/{_tf1_leaf(module, param)}"
        return f"electra/embeddings/{table}"  # word_/position_/token_type_embeddings
    if module == "electra.embeddings_project":
        return f"{scope}/embeddings_project/{_tf1_leaf(module, param)}"
    if module.startswith("electra.encoder.layer."):
        index, sub = module[len("electra.encoder.layer."):].split(".", 1)
        return f"{scope}/encoder/layer_{index}/{_TF1_SUBLAYER[sub]}/{_tf1_leaf(module, param)}"
    if module in _TF1_HEADS:
        return f"{_TF1_HEADS[module]}/{_tf1_leaf(module, param)}"
    raise ValueError(f"no TF1 name for {hf_name}")


def tf1_name_map(dims: EncoderDims, part: Part) -> dict[str, str]:
    """`{hf_name: tf1_name}` for every weight of `part`."""
    return {name: tf1_name(name, part) for name in hf_weight_names(dims, part)}
