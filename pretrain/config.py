"""Pretraining hyperparameters: the original ELECTRA keys with their meaning, plus ours.

`from_hparams` reads a JSON file or string (the original's `--hparams`), rejects unknown
keys by name, applies the `model_size` preset to every size key the user did not give, and
validates once. Derived values (`max_predictions_per_seq`, the generator's sizes) come from
named functions, not from parsing side effects.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, Mapping, NamedTuple, Sequence

import electra_data
from foundation import fileio
from foundation.errors import UserError

# The original's per-size defaults (configure_pretraining.py and Table 6 of the paper);
# keys here win over the dataclass defaults unless the user sets them.
PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, learning_rate=5e-4,
                  train_batch_size=128, max_seq_length=128, generator_hidden_size=0.25, mask_prob=0.15),
    "base": dict(embedding_size=768, hidden_size=768, num_hidden_layers=12, learning_rate=2e-4,
                 train_batch_size=256, max_seq_length=512, generator_hidden_size=0.33333, mask_prob=0.15),
    "large": dict(embedding_size=1024, hidden_size=1024, num_hidden_layers=24, learning_rate=2e-4,
                  train_batch_size=2048, max_seq_length=512, generator_hidden_size=0.25, mask_prob=0.25),
}
# Encoder keys that the original took through `model_hparam_overrides`.
MODEL_OVERRIDE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                       "type_vocab_size", "embedding_size", "vocab_size")
OPTIMIZERS = ("adamw", "lamb")
PRECISIONS = ("float32", "bfloat16", "float16", "auto")
LR_SCHEDULES = ("linear", "wsd")


@dataclasses.dataclass(frozen=True)
class EncoderDims:
    """Sizes of one transformer encoder (the generator's or the discriminator's)."""

    vocab_size: int
    embedding_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Resolved hyperparameters of one pretraining run (see docs/pretraining.md)."""

    # what to run (original keys; --do-train/--do-eval override)
    do_train: bool = True
    do_eval: bool = False
    # objective (original keys)
    electra_objective: bool = True
    gen_weight: float = 1.0
    disc_weight: float = 50.0
    mask_prob: float = 0.15
    masking_with_replacement: bool = False  # True = the original's sampler (masks slightly fewer)
    # optimisation (original keys)
    learning_rate: float = 5e-4
    lr_decay_power: float = 1.0
    weight_decay_rate: float = 0.01
    num_warmup_steps: int = 10000
    # ours: "linear" is the original's warm-up then linear decay over the whole run; "wsd" holds the peak
    # rate after warm-up and decays linearly to 0 over the last decay_steps (0: decay_fraction of the run)
    lr_schedule: str = "linear"
    decay_steps: int = 0
    decay_fraction: float = 0.2
    branch_from: str | None = None  # a checkpoint (MODEL_DIR/ckpt-N or a model dir) whose whole state starts the run
    # training (original keys)
    iterations_per_loop: int = 200
    save_checkpoints_steps: int = 1000
    save_checkpoints_secs: float = 0.0  # ours: also save when this much wall-clock time passed; 0 = steps only
    profile_host_call: int = 0  # ours: write a TensorBoard profile of this run's N-th host call; 0 = none
    num_train_steps: int = 1000000
    num_eval_steps: int = 100
    keep_checkpoint_max: int = 5
    # model (original keys; the model_size preset fills the ones not given)
    model_size: str = "small"
    vocab_size: int = 32200
    embedding_size: int = 128
    hidden_size: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    do_lower_case: bool = False
    # generator (original keys)
    uniform_generator: bool = False
    untied_generator_embeddings: bool = False
    generator_layers: float = 1.0
    generator_hidden_size: float = 0.25
    disallow_correct: bool = False
    temperature: float = 1.0
    # batches (original keys)
    max_seq_length: int = 128
    train_batch_size: int = 128
    eval_batch_size: int = 128
    # TPU (original keys)
    use_tpu: bool = False
    num_tpu_cores: int = 8
    tpu_name: str | None = None
    tpu_zone: str | None = None
    gcp_project: str | None = None
    # ours
    seed: int = 0
    optimizer: str = "adamw"
    adam_bias_correction: bool = False  # the original's AdamW has none; LAMB always corrects
    clip_norm: float = 1.0
    precision: str = "auto"  # bfloat16 on TPU, float16 on GPU; on a CPU bfloat16 if it has AVX512-BF16/AMX
    gradient_accumulation_steps: int = 1
    jit_compile: bool | str = "auto"  # XLA for the forward/backward pass; auto: on TPU only (distribute.py)
    watchdog_seconds: float = 0.0  # 0 = no hang watchdog
    num_gpus: int | None = None
    log_every_steps: int = 10
    shuffle_buffer: int = 200_000  # input records held: two permuted windows of ~3.7 shards (512 tokens)

    def discriminator_dims(self) -> EncoderDims:
        return EncoderDims(
            vocab_size=self.vocab_size, embedding_size=self.embedding_size, hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size, max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size, hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob)

    def generator_dims(self) -> EncoderDims:
        return generator_dims(self.discriminator_dims(), self.generator_hidden_size, self.generator_layers)

    @property
    def lr_decay_steps(self) -> int:
        """The WSD schedule's decay length: `decay_steps`, or `decay_fraction` of the run when it is 0."""
        return wsd_decay_steps(self.num_train_steps, self.decay_steps, self.decay_fraction)

    @property
    def max_predictions_per_seq(self) -> int:
        return max_predictions_per_seq(self.mask_prob, self.max_seq_length)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def max_predictions_per_seq(mask_prob: float, max_seq_length: int) -> int:
    """N, the fixed number of masked slots per sequence, exactly as the original derives it.

    (The original evaluates this before applying the size preset; here it uses the final values.)
    """
    return int((mask_prob + 0.005) * max_seq_length)


def wsd_decay_steps(num_train_steps: int, decay_steps: int, decay_fraction: float) -> int:
    """Steps of the WSD decay: `decay_steps` when given (> 0), else `round(decay_fraction * num_train_steps)`."""
    return decay_steps if decay_steps > 0 else int(round(decay_fraction * num_train_steps))


def default_heads(hidden_size: int) -> int:
    """The original: one attention head per 64 hidden units."""
    return max(1, hidden_size // 64)


def generator_dims(disc: EncoderDims, hidden_fraction: float, layer_fraction: float) -> EncoderDims:
    """The generator's sizes as the original's `get_generator_config` scales them."""
    hidden = int(round(disc.hidden_size * hidden_fraction))
    return dataclasses.replace(
        disc,
        hidden_size=hidden,
        num_hidden_layers=int(round(disc.num_hidden_layers * layer_fraction)),
        intermediate_size=4 * hidden,
        num_attention_heads=default_heads(hidden),
    )


def _is_comment(key: str) -> bool:
    """Provenance keys (`_comment`, `_source`, `_source_learning_rate`, ...) are allowed and ignored."""
    return key.startswith("_") or key in ("comment", "source")


def load_hparams(source: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON file path, a bundled preset's name, a JSON string, or a mapping -> dict (comment keys dropped)."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        raw = dict(source)
        where = "hparams"
    else:
        text = str(source).strip()
        where = "--hparams"
        if not text.startswith(("{", "[")):
            if not fileio.exists(text) and text in electra_data.preset_names():
                text = config_path(text)
            if not fileio.exists(text):
                raise UserError(f"hparams file not found: {text} (or name a bundled preset: "
                                f"{', '.join(electra_data.preset_names())})")
            where = text
            text = fileio.read_text(text)
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise UserError(f"hparams {where} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise UserError(f"hparams {where} must be a JSON object, got {type(raw).__name__}")
    overrides = raw.pop("model_hparam_overrides", None) or {}
    if not isinstance(overrides, dict):
        raise UserError(f"hparam 'model_hparam_overrides' in {where} must be a JSON object of encoder keys, "
                        f"got {overrides!r}")
    for key, value in overrides.items():
        if key not in MODEL_OVERRIDE_KEYS:
            raise UserError(f"unknown key 'model_hparam_overrides.{key}' in {where}")
        raw[key] = value
    return {k: v for k, v in raw.items() if not _is_comment(k)}


def layer_hparams(layers: Sequence[str | Mapping[str, Any] | None]) -> dict[str, Any]:
    """Several hparams sources (`load_hparams`'s kinds) as one dict; later ones win, as repeated --hparams do."""
    given: dict[str, Any] = {}
    for layer in layers:
        given.update(load_hparams(layer))
    return given


_FIELDS = {f.name: f for f in dataclasses.fields(PretrainConfig)}
_TYPES = typing.get_type_hints(PretrainConfig)  # the annotations as types, not strings
_DERIVED = ("max_predictions_per_seq",)


def from_hparams(source: str | Mapping[str, Any] | None, base: str | Mapping[str, Any] | None = None) -> PretrainConfig:
    """The run's config: dataclass defaults <- model_size preset <- `base` <- `source`.

    `base` and `source` are each a JSON file path, a JSON string or a dict; later ones win.
    """
    given = layer_hparams([base, source])
    for key in given:
        if key in _DERIVED:
            raise UserError(f"hparam '{key}' is derived (from mask_prob and max_seq_length); remove it")
        if key not in _FIELDS:
            raise UserError(f"unknown hparam '{key}'")
    given = {k: _coerce(k, v) for k, v in given.items()}  # types first: the defaults below compute with them
    size = given.get("model_size", PretrainConfig.model_size)
    if size not in PRESETS:
        raise UserError(f"hparam 'model_size' must be one of {', '.join(PRESETS)}, got {size!r}")
    values: dict[str, Any] = dict(PRESETS[size])
    values.update(given)
    hidden = values["hidden_size"]
    if hidden >= 1:  # else validate() names hidden_size, not a derived key
        values.setdefault("num_attention_heads", default_heads(hidden))
        values.setdefault("intermediate_size", 4 * hidden)
    return validate(PretrainConfig(**{k: _coerce(k, v) for k, v in values.items()}))


def _coerce(key: str, value: Any) -> Any:
    """Check a value's JSON type against the field's type (ints accepted where floats are expected)."""
    allowed = typing.get_args(_TYPES[key]) or (_TYPES[key],)  # `int | None` -> (int, NoneType)
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"hparam '{key}' must not be null")
    kinds = [t for t in allowed if t is not type(None)]
    for kind in kinds:
        numeric = kind is float and isinstance(value, int)
        if isinstance(value, bool) == (kind is bool) and (isinstance(value, kind) or numeric):
            return float(value) if kind is float else value
    raise UserError(f"hparam '{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")


INT64_MAX = 2**63 - 1  # TensorFlow's step and counters


class Range(NamedTuple):
    """An interval of allowed values; `open_low`/`open_high` exclude that end."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    why: str = ""  # said after the range

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return math.isfinite(value) and above and below

    def __str__(self) -> str:
        low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (self.low, self.high))
        if self.high >= INT64_MAX:
            text = f"greater than {low}" if self.open_low else f"at least {low}"
        else:
            text = f"in {'(' if self.open_low else '['}{low}, {high}{')' if self.open_high else ']'}"
        return f"{text}: {self.why}" if self.why else text


# The range of every numeric hparam. A numeric field not listed here must be finite, >= 0 and (an
# int) fit TensorFlow's int64 (`hparam_range`), so a field added later is range-checked too.
AT_LEAST_1 = ("num_train_steps", "train_batch_size", "eval_batch_size", "iterations_per_loop", "save_checkpoints_steps",
              "gradient_accumulation_steps", "num_tpu_cores", "log_every_steps", "num_eval_steps", "embedding_size",
              "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings")
RANGES: dict[str, Range] = {
    **{key: Range(1) for key in AT_LEAST_1},
    "hidden_dropout_prob": Range(0.0, 1.0, open_high=True, why="1 drops every activation"),
    "attention_probs_dropout_prob": Range(0.0, 1.0, open_high=True, why="1 drops every attention weight"),
    "mask_prob": Range(0.0, 1.0, open_low=True, open_high=True),
    "generator_hidden_size": Range(0.0, 1.0, open_low=True, why="a fraction of hidden_size"),
    "generator_layers": Range(0.0, 1.0, open_low=True, why="a fraction of num_hidden_layers"),
    "learning_rate": Range(0.0, open_low=True),
    "temperature": Range(0.0, open_low=True),
    "type_vocab_size": Range(2, why="the records' segment ids are 0 and 1"),
    "vocab_size": Range(5, why="it must hold the 5 special tokens"),
    "max_seq_length": Range(4),
    "shuffle_buffer": Range(2, why="it holds two windows of half of it"),
    "seed": Range(0, 2**31 - 1, why="what numpy's seed, which Keras sets, accepts"),
    "save_checkpoints_secs": Range(0, why="0 = by steps only"),
    "profile_host_call": Range(0, why="0 = no profile"),
    "decay_fraction": Range(0.0, 1.0),
    "decay_steps": Range(0, why="0: decay_fraction of num_train_steps"),
}


def hparam_range(key: str) -> Range | None:
    """The allowed values of numeric hparam `key` (None: not numeric)."""
    kind = next(t for t in typing.get_args(_TYPES[key]) or (_TYPES[key],) if t is not type(None))
    if kind not in (int, float):
        return None
    allowed = RANGES.get(key, Range(0))
    return allowed._replace(high=min(allowed.high, INT64_MAX)) if kind is int else allowed


def validate(cfg: PretrainConfig) -> PretrainConfig:
    """All range and cross-field checks in one place; the message names the key and value."""
    def need(cond: bool, key: str, why: str) -> None:
        if not cond:
            raise UserError(f"hparam '{key}' = {getattr(cfg, key)!r}: {why}")

    for key in _FIELDS:  # every numeric field, before any check that computes with them
        allowed, value = hparam_range(key), getattr(cfg, key)
        if allowed is not None and value is not None:
            need(value in allowed, key, f"must be {allowed}")
    need(cfg.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    need(cfg.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
    need(cfg.jit_compile in (True, False, "auto"), "jit_compile", 'must be true, false or "auto"')
    need(cfg.max_predictions_per_seq >= 1, "mask_prob", "gives max_predictions_per_seq < 1 at this max_seq_length")
    need(cfg.max_seq_length <= cfg.max_position_embeddings, "max_seq_length",
         f"exceeds max_position_embeddings {cfg.max_position_embeddings}")
    need(cfg.hidden_size % cfg.num_attention_heads == 0, "hidden_size",
         f"must be divisible by num_attention_heads {cfg.num_attention_heads}")
    need(cfg.generator_dims().hidden_size >= 1, "generator_hidden_size", "gives a generator hidden size < 1")
    need(cfg.generator_dims().num_hidden_layers >= 1, "generator_layers", "gives a generator with no layers")
    need(cfg.num_warmup_steps <= cfg.num_train_steps, "num_warmup_steps", "must be in [0, num_train_steps]")
    need(cfg.lr_schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")
    if cfg.lr_schedule == "wsd":
        need(cfg.num_warmup_steps + cfg.lr_decay_steps <= cfg.num_train_steps,
             "decay_steps" if cfg.decay_steps else "decay_fraction",
             f"the decay must start after the {cfg.num_warmup_steps} warm-up steps, within num_train_steps "
             f"{cfg.num_train_steps}")
    need(cfg.train_batch_size % cfg.gradient_accumulation_steps == 0, "train_batch_size",
         f"must be divisible by gradient_accumulation_steps {cfg.gradient_accumulation_steps}")
    need(cfg.electra_objective, "electra_objective", "only the ELECTRA objective is implemented")
    need(not cfg.untied_generator_embeddings, "untied_generator_embeddings", "only tied embeddings are implemented")
    need(not cfg.uniform_generator, "uniform_generator", "not implemented")
    need(not cfg.disallow_correct, "disallow_correct", "not implemented")
    return cfg


def config_path(name: str) -> str:
    """A bundled preset (`demo`, `tiny`, `small`, `base`, `large`): `configs/<name>.json`, package data."""
    return electra_data.preset(name)


def fill_from_data(given: Mapping[str, Any], vocab_size: int | None, max_seq_length: int | None) -> dict[str, Any]:
    """The hparams layers with `vocab_size` and `max_seq_length` taken from the data where no layer set them.

    A merged vocab almost never has a preset's size, so the presets leave `vocab_size` to the
    vocab file; where a layer does set either key, the trainer and the doctor check it against
    the vocab and the records' manifest instead (one error naming both values).
    """
    filled = dict(given)
    for key, value in (("vocab_size", vocab_size), ("max_seq_length", max_seq_length)):
        if value is not None:
            filled.setdefault(key, value)
    return filled
