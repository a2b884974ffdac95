"""Start pretraining from released weights: Hugging Face ELECTRA folders or original TF1 checkpoints.

`init_from_external(model, path)` is what `--init-checkpoint` calls when the path is not one
of this project's own checkpoints:

- a Hugging Face folder (`config.json` + `model.safetensors`, or `pytorch_model.bin` when
  torch is installed): a discriminator folder, a generator folder, or a folder holding
  `discriminator/` and optionally `generator/` as `electra-export` writes them;
- a google-research ELECTRA TF1 checkpoint (`model.ckpt-N` prefix or its directory), as
  KoELECTRA and KcELECTRA released: variables mapped by `hf_format.tf1_name`, Adam slots ignored.

Sizes are checked before anything is assigned: a differing `config.json` size or a variable
of the wrong shape is a `UserError` that names it, and the model is left untouched.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable, Mapping

import numpy as np

from foundation import fileio
from foundation.errors import UserError
from pretrain.conversion import hf_format
from pretrain.config import EncoderDims, PretrainConfig, generator_dims

TF1_MARKER = "electra/embeddings/word_embeddings"
TF1_GENERATOR_MARKER = "generator/encoder/layer_0/attention/self/query/kernel"
TF1_MODEL_SCOPES = ("electra/", "generator/", "discriminator_predictions/", "generator_predictions/")
TF1_SLOT_SUFFIXES = ("/adam_m", "/adam_v")  # optimiser slots: never loaded
_TF1_LAYER_RE = re.compile(r"(electra|generator)/encoder/layer_(\d+)/")
# Weights a released checkpoint may lack (e.g. a fine-tuning export): they keep their initial values.
OPTIONAL_PREFIXES = ("discriminator_predictions.", "generator_predictions.", "generator_lm_head.")


def _part_weights(model, part: hf_format.Part) -> dict:
    return model.discriminator_weights() if part == "discriminator" else model.generator_weights()


def _part_dims(model, part: hf_format.Part) -> EncoderDims:
    return model.cfg.discriminator_dims() if part == "discriminator" else model.cfg.generator_dims()


def _plan(model, part: hf_format.Part, lookup: Callable[[str], np.ndarray | None], source: str
          ) -> tuple[list[tuple[object, np.ndarray]], list[str]]:
    """(variable, TF-layout value) pairs for `part`, and the optional weights `source` lacks.

    `lookup(hf_name)` returns the stored weight in PyTorch layout, or None when absent.
    Everything is checked before anything is assigned.
    """
    assignments, skipped = [], []
    for name, variable in _part_weights(model, part).items():
        value = lookup(name)
        if value is None and name == hf_format.TIED_WEIGHT:
            value = lookup("electra.embeddings.word_embeddings.weight")
        if value is None:
            if name.startswith(OPTIONAL_PREFIXES):
                skipped.append(name)
                continue
            raise UserError(f"{source}: no weight for {part} {name}")
        value = hf_format.to_tf_layout(name, np.asarray(value, dtype=np.float32))
        want = tuple(variable.shape)
        if value.shape != want:
            raise UserError(f"{source}: {part} weight {name} has shape {value.shape}, the model needs {want}")
        assignments.append((variable, value))
    return assignments, skipped


def _describe(part: str, assignments: list, skipped: list[str]) -> str:
    text = f"{part}: {len(assignments)} weights"
    if skipped:
        text += f" ({len(skipped)} head weights absent, kept initial: {', '.join(sorted(skipped)[:2])}...)"
    return text


# ---------------------------------------------------------------- Hugging Face folders

def _hf_folders(path: str) -> dict[hf_format.Part, str]:
    """Which part each Hugging Face folder under `path` holds (by its config's architecture)."""
    if fileio.exists(fileio.join(path, "config.json")):
        config = _read_json(fileio.join(path, "config.json"))
        part = "generator" if "ElectraForMaskedLM" in (config.get("architectures") or []) else "discriminator"
        return {part: path}
    found = {p: fileio.join(path, p) for p in hf_format.PARTS if fileio.exists(fileio.join(path, p, "config.json"))}
    return found


def _read_json(path: str) -> dict:
    try:
        data = json.loads(fileio.read_text(path))
    except ValueError as exc:
        raise UserError(f"corrupt JSON in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object")
    return data


def read_hf_state(folder: str) -> dict[str, np.ndarray]:
    """A Hugging Face folder's weights as numpy (PyTorch layout), keys prefixed `electra.` as in
    `ElectraForPreTraining`. Reads `model.safetensors` (or its sharded index) without torch;
    `pytorch_model.bin` needs torch."""
    from safetensors.numpy import load

    single = fileio.join(folder, "model.safetensors")
    index = fileio.join(folder, "model.safetensors.index.json")
    if fileio.exists(single):
        files = [single]
    elif fileio.exists(index):
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        files = [fileio.join(folder, s) for s in shards]
    elif fileio.exists(fileio.join(folder, "pytorch_model.bin")):
        return _prefixed(_read_torch_bin(fileio.join(folder, "pytorch_model.bin")))
    else:
        raise UserError(f"{folder} has config.json but no model.safetensors or pytorch_model.bin")
    state: dict[str, np.ndarray] = {}
    for file in files:
        with fileio.open_read(file) as fh:
            try:
                state.update(load(fh.read()))
            except Exception as exc:  # safetensors raises its own SafetensorError
                raise UserError(f"unreadable safetensors file {file}: {exc}") from exc
    return _prefixed(state)


def _read_torch_bin(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as exc:
        raise UserError(f"{path} is a PyTorch pickle; install torch to read it, or convert it to safetensors") from exc
    with fileio.open_read(path) as fh:
        state = torch.load(fh, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}


def _prefixed(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`ElectraModel` folders store `embeddings.*`/`encoder.*` without the `electra.` prefix."""
    if any(k.startswith("electra.") for k in state):
        return state
    return {(f"electra.{k}" if k.startswith(("embeddings", "encoder")) else k): v for k, v in state.items()}


def _load_hf(model, folders: Mapping[hf_format.Part, str]) -> str:
    plans = []
    # Generator first: its embedding tables are the discriminator's (shared), and the
    # discriminator's copy should win when a third-party export stored two different ones.
    for part in sorted(folders, key=lambda p: p != "generator"):
        folder = folders[part]
        config_path = fileio.join(folder, "config.json")
        hf_format.check_hf_config(_read_json(config_path), _part_dims(model, part), config_path)
        state = read_hf_state(folder)
        assignments, skipped = _plan(model, part, state.get, folder)
        plans.append((part, folder, assignments, skipped))
    for _, _, assignments, _ in plans:
        for variable, value in assignments:
            variable.assign(value)
    parts = "; ".join(f"{_describe(part, a, s)} from {folder}" for part, folder, a, s in plans)
    return f"Hugging Face ELECTRA: {parts}"


# ---------------------------------------------------------------- original TF1 checkpoints

def _tf1_checkpoint(path: str) -> str | None:
    """The checkpoint prefix for `path` (a prefix or a directory with a `checkpoint` file), or None."""
    from foundation.quiet_tf import tf

    if fileio.isdir(path):
        return tf.train.latest_checkpoint(path)
    if fileio.exists(path + ".index"):
        return path
    return None


def tf1_sizes(stored: Mapping[str, list[int]]) -> tuple[dict[str, int], dict[str, int]]:
    """The sizes an original checkpoint's shapes fix: the discriminator's (`EncoderDims` fields, the
    keys a user types) and the generator's `hidden_size` and `num_hidden_layers`. `stored` is `{name: shape}`."""
    def dim(name: str, axis: int) -> int | None:
        return stored[name][axis] if name in stored else None

    def layers(scope: str) -> int | None:
        return len({m.group(2) for m in map(_TF1_LAYER_RE.match, stored) if m and m.group(1) == scope}) or None

    disc = {
        "vocab_size": dim(TF1_MARKER, 0),
        "embedding_size": dim(TF1_MARKER, 1),
        "max_position_embeddings": dim("electra/embeddings/position_embeddings", 0),
        "type_vocab_size": dim("electra/embeddings/token_type_embeddings", 0),
        "hidden_size": dim("electra/encoder/layer_0/attention/self/query/kernel", 1),
        "intermediate_size": dim("electra/encoder/layer_0/intermediate/dense/kernel", 1),
        "num_hidden_layers": layers("electra"),
    }
    gen = {"hidden_size": dim(TF1_GENERATOR_MARKER, 1), "num_hidden_layers": layers("generator")}
    return ({k: v for k, v in disc.items() if v is not None}, {k: v for k, v in gen.items() if v is not None})


def tf1_size_differences(stored: Mapping[str, list[int]], cfg: PretrainConfig) -> list[str]:
    """What differs between an original checkpoint and the hparams, in the keys the user typed.

    The generator's sizes are fractions of the discriminator's, so they are checked by applying
    the user's fractions to the checkpoint's discriminator: a differing `hidden_size` is
    reported once, as `hidden_size`, not again as the generator size derived from it.
    """
    disc_sizes, gen_sizes = tf1_sizes(stored)
    ours = cfg.discriminator_dims()
    out = [f"'{key}': checkpoint has {value}, hparams say {getattr(ours, key)}"
           for key, value in disc_sizes.items() if getattr(ours, key) != value]
    gen = generator_dims(dataclasses.replace(ours, **disc_sizes), cfg.generator_hidden_size, cfg.generator_layers)
    for key, field in (("generator_hidden_size", "hidden_size"), ("generator_layers", "num_hidden_layers")):
        if field in gen_sizes and getattr(gen, field) != gen_sizes[field]:
            out.append(f"'{key}' = {getattr(cfg, key):g} gives a generator {field} of {getattr(gen, field)}, "
                       f"the checkpoint's generator has {gen_sizes[field]}")
    return out


_NO_GENERATOR = "--init-checkpoint {path} holds no generator, which --init-discriminator-from-generator copies"


def _load_tf1(model, prefix: str, need_generator: bool = False) -> str:
    from foundation.quiet_tf import tf

    unreadable = (tf.errors.OpError, ValueError, IndexError)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except unreadable as exc:
        raise UserError(f"unreadable TF checkpoint {prefix}: {_first_line(exc)}") from exc
    stored = reader.get_variable_to_shape_map()
    if TF1_MARKER not in stored:
        raise UserError(f"{prefix} is a TF checkpoint but not an original ELECTRA one (no {TF1_MARKER})")
    differ = tf1_size_differences(stored, model.cfg)
    if differ:
        raise UserError(f"--init-checkpoint {prefix} does not fit the hparams: {'; '.join(differ)}")
    parts: list[hf_format.Part] = ["discriminator"]
    if TF1_GENERATOR_MARKER in stored:
        parts.insert(0, "generator")
    elif need_generator:
        raise UserError(_NO_GENERATOR.format(path=prefix))
    used: set[str] = set()

    def lookup_for(part: hf_format.Part) -> Callable[[str], np.ndarray | None]:
        def lookup(hf_name: str) -> np.ndarray | None:
            name = hf_format.tf1_name(hf_name, part)
            if name not in stored:
                return None
            used.add(name)
            # TF1 stores TF layout; _plan expects PyTorch layout and transposes back.
            return hf_format.to_torch_layout(hf_name, reader.get_tensor(name))
        return lookup

    try:
        plans = [(part, *_plan(model, part, lookup_for(part), prefix)) for part in parts]
    except unreadable as exc:  # a truncated .data file fails only when a tensor is read
        raise UserError(f"unreadable TF checkpoint {prefix}: {_first_line(exc)}") from exc
    unused = sorted(name for name in stored if name.startswith(TF1_MODEL_SCOPES)
                    and not name.endswith(TF1_SLOT_SUFFIXES) and name not in used)
    if unused:
        raise UserError(f"--init-checkpoint {prefix}: {len(unused)} of its weights have no place in the model "
                        f"(e.g. {unused[0]}); the hparams do not describe this checkpoint")
    for _, assignments, _ in plans:
        for variable, value in assignments:
            variable.assign(value)
    described = "; ".join(_describe(part, a, s) for part, a, s in plans)
    if "generator" not in parts:
        described += "; no generator in the checkpoint, generator encoder kept initial"
    return f"original ELECTRA TF1 checkpoint {prefix}: {described}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def init_from_external(model, path: str, need_generator: bool = False) -> str:
    """Load released ELECTRA weights into `model`; a one-line description of what was loaded.

    `model` is this project's RTD model (`discriminator_weights()`, `generator_weights()`,
    `cfg`). Raises `UserError` for a path that is neither format, a size that differs from
    the model's, a variable of the wrong shape, or (`need_generator`) no generator in it;
    nothing is assigned in those cases.
    """
    if not fileio.exists(path) and not fileio.exists(path + ".index"):
        raise UserError(f"--init-checkpoint not found: {path}")
    folders = _hf_folders(path) if fileio.isdir(path) else {}
    if folders:
        if need_generator and "generator" not in folders:
            raise UserError(_NO_GENERATOR.format(path=path))
        return _load_hf(model, folders)
    prefix = _tf1_checkpoint(path)
    if prefix is not None:
        return _load_tf1(model, prefix, need_generator)
    raise UserError(
        f"--init-checkpoint {path}: neither a Hugging Face ELECTRA folder (config.json) "
        "nor an original ELECTRA TF1 checkpoint (model.ckpt-N.index)")
