"""The model directory: checkpoints, the resolved run config, and the vocab that goes with them.

`DIR/models/NAME/` holds `tf.train.CheckpointManager` checkpoints (model, optimiser slots,
step; the data position is a function of the step), `run_config.json` (hparams, vocab
sha256, data manifest) and copies of `vocab.txt` / `vocab_settings.json`, so the export
needs nothing else. A restart whose settings do not fit the saved ones is refused before
any training, naming the field.
"""
from __future__ import annotations

import json
from typing import Any

import tensorflow as tf

from foundation import fileio
from data_prep import records, vocab_files
from foundation.errors import UserError
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


def check_compatible(saved: dict[str, Any], cfg: PretrainConfig, vocab_sha256: str, where: str) -> None:
    """Refuse a restart whose structure or vocab differs from the saved run, naming the field."""
    old = saved.get("hparams", {})
    for key in STRUCTURAL:
        if key in old and old[key] != getattr(cfg, key):
            raise UserError(f"{where}: hparam '{key}' is {old[key]!r} in the saved run but {getattr(cfg, key)!r} now; "
                            "use the same value or a new --model-name")
    if saved.get("vocab_sha256") not in (None, vocab_sha256):
        raise UserError(f"{where}: the vocab file differs from the one this run started with (sha256); "
                        "use the same vocab.txt or a new --model-name")


def prepare_model_dir(model_dir: str, cfg: PretrainConfig, vocab_path: str,
                      manifest: records.Manifest | None) -> None:
    """Create the model dir (clear error if unwritable), check or write run_config.json, copy the vocab."""
    fileio.makedirs(model_dir)
    sha = records.file_sha256(vocab_path)
    saved = read_run_config(model_dir)
    if saved is not None:
        check_compatible(saved, cfg, sha, fileio.join(model_dir, RUN_CONFIG))
    fileio.write_text(fileio.join(model_dir, RUN_CONFIG),
                      json.dumps(run_config(cfg, sha, manifest), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    fileio.write_text(fileio.join(model_dir, VOCAB), fileio.read_text(vocab_path))
    settings = vocab_files.load_settings(vocab_path) or vocab_files.VocabSettings(do_lower_case=cfg.do_lower_case)
    fileio.write_text(fileio.join(model_dir, vocab_files.SETTINGS_FILE), settings.to_json())


def model_checkpoint(model) -> tf.train.Checkpoint:
    """The model's variables under stable names (`rtd.checkpoint_variables`)."""
    from pretrain.rtd import checkpoint_variables

    return tf.train.Checkpoint(**checkpoint_variables(model))


def make_checkpoint(model, optimizer, step: tf.Variable) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model_checkpoint(model), optimizer=optimizer, step=step)


def make_manager(checkpoint: tf.train.Checkpoint, model_dir: str, keep: int) -> tf.train.CheckpointManager:
    return tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=keep or None)


def checkpoint_path(model_dir: str, step: int | None = None) -> str:
    """The latest checkpoint of a model dir, or the one saved at `step`."""
    state = tf.train.get_checkpoint_state(model_dir)
    if state is None or not state.all_model_checkpoint_paths:
        raise UserError(f"no checkpoint in {model_dir}")
    if step is None:
        return state.model_checkpoint_path
    for path in state.all_model_checkpoint_paths:
        if path.endswith(f"-{step}"):
            return path
    raise UserError(f"no checkpoint for step {step} in {model_dir}")


def restore_model(model_dir: str, step: int | None = None):
    """(model, config, step) of a trained run, weights restored; for export and continued training."""
    from pretrain.rtd import build_model, special_ids

    saved = read_run_config(model_dir)
    if saved is None:
        raise UserError(f"{model_dir} has no {RUN_CONFIG}: not a model directory of this trainer")
    cfg = from_hparams(saved["hparams"])
    vocab = vocab_files.load_vocab(fileio.join(model_dir, VOCAB))
    model = build_model(cfg, special_ids(vocab))
    path = checkpoint_path(model_dir, step)
    step_var = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(model=model_checkpoint(model), step=step_var).restore(path).expect_partial() \
        .assert_existing_objects_matched()
    return model, cfg, int(step_var.numpy())


def restore_weights(model, path: str) -> str:
    """Weights only (no optimiser, no step) from a run dir or checkpoint prefix of ours."""
    if fileio.isdir(path):
        path = checkpoint_path(path)
    try:
        tf.train.Checkpoint(model=model_checkpoint(model)).restore(path).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        raise UserError(f"cannot initialise from {path}: {str(exc).splitlines()[0]}") from exc
    return path
