"""The model directory: checkpoints, the resolved run config, and the vocab that goes with them.

`DIR/models/NAME/` holds `tf.train.CheckpointManager` checkpoints (model, optimiser slots,
step; the data position is a function of the step), `run_config.json` (hparams, vocab
sha256, data manifest) and copies of `vocab.txt` / `vocab_settings.json`, so the export
needs nothing else. A restart whose settings do not fit the saved checkpoints is refused
before any training, naming the field.

Every checkpoint that is read is validated: it must restore completely and hold only finite
tensors. Resume and export fall back past a damaged one with a warning naming it; an
explicitly chosen one (`--step`, `--init-checkpoint`) is a `UserError` naming it.
"""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
from absl import logging

from foundation import fileio
from data_prep import records, vocab_files
from foundation.errors import UserError
from pretrain.model import rtd
from pretrain.config import PretrainConfig, from_hparams

RUN_CONFIG = "run_config.json"
VOCAB = "vocab.txt"
# hparams that fix the shapes of the checkpoint's variables or the meaning of its ids
STRUCTURAL = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "max_position_embeddings", "type_vocab_size", "generator_hidden_size",
              "generator_layers", "optimizer")


def run_config(cfg: PretrainConfig, vocab_sha256: str, manifest: records.Manifest | None) -> dict[str, Any]:
    return {
        "hparams": cfg.to_dict(),
        "max_predictions_per_seq": cfg.max_predictions_per_seq,
        "vocab_sha256": vocab_sha256,
        "data_manifest": json.loads(manifest.to_json()) if manifest is not None else None,
    }


def read_run_config(model_dir: str) -> dict[str, Any] | None:
    path = fileio.join(model_dir, RUN_CONFIG)
    if not fileio.exists(path):
        return None
    try:
        return json.loads(fileio.read_text(path))
    except ValueError as exc:
        raise UserError(f"corrupt {path}: {exc}") from exc


def structural_differences(saved_hparams: dict[str, Any], cfg: PretrainConfig) -> list[tuple[str, Any, Any]]:
    """(key, saved value, current value) of each STRUCTURAL hparam that differs from a saved run's."""
    return [(key, saved_hparams[key], getattr(cfg, key)) for key in STRUCTURAL
            if key in saved_hparams and saved_hparams[key] != getattr(cfg, key)]


def check_compatible(saved: dict[str, Any], cfg: PretrainConfig, vocab_sha256: str, where: str) -> None:
    """Refuse a restart whose structure or vocab differs from the saved run, naming the field."""
    for key, old, new in structural_differences(saved.get("hparams", {}), cfg)[:1]:
        raise UserError(f"{where}: hparam '{key}' is {old!r} in the saved run but {new!r} now; "
                        "use the same value or a new --model-name")
    if saved.get("vocab_sha256") not in (None, vocab_sha256):
        raise UserError(f"{where}: the vocab file differs from the one this run started with (sha256); "
                        "use the same vocab.txt or a new --model-name")


def check_model_dir(model_dir: str, cfg: PretrainConfig, vocab_path: str) -> None:
    """Refuse settings that do not fit the run's saved checkpoints; reads only.

    A `run_config.json` without any checkpoint binds nothing (a start that failed before
    its first save trained nothing), so the corrected command is not refused by it.
    """
    saved = read_run_config(model_dir)
    if saved is not None and tf.train.get_checkpoint_state(model_dir) is not None:
        check_compatible(saved, cfg, records.file_sha256(vocab_path), fileio.join(model_dir, RUN_CONFIG))


def write_run_files(model_dir: str, cfg: PretrainConfig, vocab_path: str,
                    manifest: records.Manifest | None) -> None:
    """Create the model dir (clear error if unwritable), write run_config.json, copy the vocab
    and the tokenisation settings the export uses: those the records were built with (their
    manifest says), else the vocab's.

    Called once the inputs, the checkpoint to resume and the init checkpoint are validated.
    """
    fileio.makedirs(model_dir)
    sha = records.file_sha256(vocab_path)
    fileio.write_text(fileio.join(model_dir, RUN_CONFIG),
                      json.dumps(run_config(cfg, sha, manifest), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    fileio.write_text(fileio.join(model_dir, VOCAB), fileio.read_text(vocab_path))
    built = manifest.flags.get("settings") if manifest is not None else None  # how the records split text
    settings = (vocab_files.VocabSettings.from_dict(built, records.MANIFEST) if built else
                vocab_files.load_settings(vocab_path) or vocab_files.VocabSettings(do_lower_case=cfg.do_lower_case))
    fileio.write_text(fileio.join(model_dir, vocab_files.SETTINGS_FILE), settings.to_json())


def model_checkpoint(model) -> tf.train.Checkpoint:
    """The model's variables under stable names (`rtd.checkpoint_variables`)."""
    return tf.train.Checkpoint(**rtd.checkpoint_variables(model))


def make_checkpoint(model, optimizer, step: tf.Variable) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model_checkpoint(model), optimizer=optimizer, step=step)


def make_manager(checkpoint: tf.train.Checkpoint, model_dir: str, keep: int) -> tf.train.CheckpointManager:
    return tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=keep or None)


def checkpoint_paths(model_dir: str) -> list[str]:
    """The checkpoints of a model dir that its `checkpoint` file lists, newest first."""
    state = tf.train.get_checkpoint_state(model_dir)
    return list(reversed(state.all_model_checkpoint_paths)) if state is not None else []


def checkpoint_path(model_dir: str, step: int | None = None) -> str:
    """The latest checkpoint of a model dir, or the one saved at `step`."""
    paths = checkpoint_paths(model_dir)
    if not paths:
        raise UserError(f"no checkpoint in {model_dir}")
    for path in paths:
        if step is None or path.endswith(f"-{step}"):
            return path
    raise UserError(f"no checkpoint for step {step} in {model_dir}")


@tf.function(reduce_retracing=True)
def _finite_flags(values: list) -> tf.Tensor:
    return tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in values])  # [len(values)] bool


def non_finite(variables: dict[str, Any]) -> list[str]:
    """Names of the float variables holding NaN or Inf: one compiled reduction, one transfer to the host."""
    named = {name: v for name, v in variables.items() if tf.as_dtype(v.dtype).is_floating}
    if not named:
        return []
    flags = _finite_flags([tf.convert_to_tensor(v) for v in named.values()]).numpy()
    return [name for name, ok in zip(named, flags) if not ok]


def restore_problem(checkpoint: tf.train.Checkpoint, path: str, variables: dict[str, Any],
                    partial: bool = False) -> str | None:
    """Restore `path` into `checkpoint`; None if it worked and every tensor is finite, else what is wrong.

    A truncated or missing file raises from deep inside TF (IndexError, DataLossError, ...);
    here it becomes a reason that the caller puts into one line naming the checkpoint.
    """
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, IndexError, tf.errors.OpError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        return f"unreadable ({lines[0][:200]})"
    bad = non_finite(variables)
    if bad:
        return f"non-finite ({len(bad)} of its tensors hold NaN/Inf, e.g. {bad[0]})"
    return None


def restore_latest(checkpoint: tf.train.Checkpoint, model_dir: str, variables: dict[str, Any],
                   partial: bool = False) -> str | None:
    """Restore the newest usable checkpoint of `model_dir` (None: there is none yet).

    A damaged or non-finite checkpoint is skipped with a warning naming it, and the one
    before it is tried; when every listed checkpoint is unusable that is a `UserError`.
    """
    paths = checkpoint_paths(model_dir)
    for path in paths:
        problem = restore_problem(checkpoint, path, variables, partial)
        if problem is None:
            return path
        logging.warning("checkpoint %s is %s; falling back to the one before it", path, problem)
    if paths:
        raise UserError(f"no usable checkpoint in {model_dir}: all {len(paths)} are damaged or hold NaN/Inf "
                        f"(newest {paths[0]}); remove them to start afresh, or use a new --model-name")
    return None


def restore_model(model_dir: str, step: int | None = None):
    """(model, config, step) of a trained run, weights restored; for export and continued training.

    Without `step`, the newest usable checkpoint (a damaged newer one is skipped with a warning);
    a chosen `step` whose checkpoint is damaged is a `UserError` naming it.
    """
    saved = read_run_config(model_dir)
    if saved is None:
        raise UserError(f"{model_dir} has no {RUN_CONFIG}: not a model directory of this trainer")
    cfg = from_hparams(saved["hparams"])
    vocab = vocab_files.load_vocab(fileio.join(model_dir, VOCAB))
    model = rtd.build_model(cfg, rtd.special_ids(vocab))
    step_var = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model_checkpoint(model), step=step_var)
    variables = rtd.checkpoint_variables(model)
    if step is None:
        if restore_latest(checkpoint, model_dir, variables, partial=True) is None:
            raise UserError(f"no checkpoint in {model_dir}")
    else:
        path = checkpoint_path(model_dir, step)
        problem = restore_problem(checkpoint, path, variables, partial=True)
        if problem is not None:
            raise UserError(f"checkpoint {path} is {problem}; choose another --step")
    return model, cfg, int(step_var.numpy())


def is_own_checkpoint(path: str) -> bool:
    """Whether `path` (a run dir or checkpoint prefix) is a checkpoint of this trainer (`model/...` names)."""
    prefix = tf.train.latest_checkpoint(path) if fileio.isdir(path) else path
    if not prefix or not fileio.exists(prefix + ".index"):
        return False
    try:
        names = [name for name, _ in tf.train.list_variables(prefix)]
    except (ValueError, IndexError, tf.errors.OpError):  # unreadable index: ours if a run config is beside it
        return fileio.exists(fileio.join(os.path.dirname(prefix), RUN_CONFIG))
    return any(name.startswith("model/") for name in names)


def restore_weights(model, path: str) -> str:
    """Weights only (no optimiser, no step) from a run dir or checkpoint prefix of ours.

    Sizes are compared with the run's `run_config.json` first, so a run of another size is
    named as such, key by key; a damaged or non-finite checkpoint is a `UserError` naming it.
    """
    prefix = checkpoint_path(path) if fileio.isdir(path) else path
    saved = read_run_config(os.path.dirname(prefix))
    if saved is not None:
        differ = [d for d in structural_differences(saved.get("hparams", {}), model.cfg) if d[0] != "optimizer"]
        if differ:
            raise UserError(f"--init-checkpoint {path} is a run of this trainer with other sizes: " + "; ".join(
                f"'{key}' is {old!r} there but {new!r} in the hparams" for key, old, new in differ))
    problem = restore_problem(tf.train.Checkpoint(model=model_checkpoint(model)), prefix,
                              rtd.checkpoint_variables(model), partial=True)
    if problem is not None:
        raise UserError(f"--init-checkpoint {prefix} is {problem}")
    return prefix


def restore_branch(checkpoint: tf.train.Checkpoint, path: str, cfg: PretrainConfig, vocab_path: str,
                   variables: dict[str, Any]) -> str:
    """`branch_from`: the whole state (weights, optimiser slots, step) of another run's checkpoint.

    `path` is a checkpoint prefix (`MODEL_DIR/ckpt-N`) or a model dir (its newest). The source's
    sizes and vocab must be this run's (its `run_config.json`, key by key); a damaged checkpoint is a
    `UserError` naming it. Returns the prefix restored.
    """
    prefix = checkpoint_path(path) if fileio.isdir(path) else path
    if not fileio.exists(prefix + ".index"):
        raise UserError(f"hparam 'branch_from' = {path!r}: no checkpoint there (give MODEL_DIR/ckpt-N or a model dir)")
    saved = read_run_config(os.path.dirname(prefix))
    if saved is not None:
        check_compatible(saved, cfg, records.file_sha256(vocab_path), f"hparam 'branch_from' = {prefix!r}")
    problem = restore_problem(checkpoint, prefix, variables)
    if problem is not None:
        raise UserError(f"hparam 'branch_from' = {prefix!r} is {problem}")
    return prefix
