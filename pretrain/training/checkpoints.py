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
import logging as logging_std
import os
import re
from typing import Any, Callable, NamedTuple

from foundation.quiet_tf import tf
from absl import logging

from foundation import fileio
from data_prep import records, vocab_files
from foundation.errors import UserError
from pretrain.model import rtd
from pretrain.config import PretrainConfig, from_hparams

RUN_CONFIG = "run_config.json"
STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's index of the checkpoints (a hint, see list_checkpoints)
CHECKPOINT_NAME = "ckpt"  # tf.train.CheckpointManager's default prefix: ckpt-<step>
_INDEX_RE = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index")
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
    if saved is not None and list_checkpoints(model_dir):
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


def list_checkpoints(model_dir: str) -> list[str]:
    """Prefixes of the `ckpt-N` checkpoints in `model_dir` (local or gs://), newest (highest N) first.

    Found by listing the index files: what is on disk is the truth. The `checkpoint` state file
    is only TensorFlow's index of it and may be missing, garbage, or behind the folder.
    """
    found = []
    for index in fileio.glob(fileio.join(model_dir, f"{CHECKPOINT_NAME}-*.index")):
        match = _INDEX_RE.fullmatch(os.path.basename(index))
        if match:
            found.append((int(match.group(1)), index[:-len(".index")]))
    return [prefix for _, prefix in sorted(found, reverse=True)]


def checkpoint_path(model_dir: str, step: int | None = None) -> str:
    """The newest checkpoint on disk in a model dir, or the one saved at `step`."""
    paths = list_checkpoints(model_dir)
    if not paths:
        raise UserError(f"no checkpoint in {model_dir}")
    for path in paths:
        if step is None or path.endswith(f"-{step}"):
            return path
    raise UserError(f"no checkpoint for step {step} in {model_dir}")


def _state_file_problem(model_dir: str) -> str | None:
    """'missing' or 'unreadable' for a `checkpoint` state file that cannot serve as the index; None if it can.

    One that names another checkpoint than the newest listed is no fault: beside a running
    training the listing and the state file are read at different instants.
    """
    if not fileio.exists(fileio.join(model_dir, STATE_FILE)):
        return "missing"
    try:
        state = tf.train.get_checkpoint_state(model_dir)  # None (and TF's own warning) when unparseable
    except (ValueError, tf.errors.OpError):
        state = None
    return None if state is not None and state.model_checkpoint_path else "unreadable"


def sync_state_file(model_dir: str, paths: list[str]) -> None:
    """Rewrite the state file from the listing (`paths`, newest first) where it disagrees: the
    `CheckpointManager` reads it to know the checkpoints its keep-limit rotation counts."""
    names = [os.path.basename(p) for p in reversed(paths)]  # oldest first, relative, as the manager writes
    if not names:
        return
    try:
        state = tf.train.get_checkpoint_state(model_dir)
    except (ValueError, tf.errors.OpError):
        state = None
    if state is not None and [os.path.basename(p) for p in state.all_model_checkpoint_paths] == names:
        return
    # the manager rotates only checkpoints with a timestamp (their index file's time) after the last preserved one (0)
    times = [fileio.stat(p + ".index").mtime_ns / 1e9 for p in reversed(paths)]
    lines = ([f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
             + [f"all_model_checkpoint_timestamps: {t!r}" for t in times])
    fileio.write_text(fileio.join(model_dir, STATE_FILE), "\n".join(lines) + "\n")


def save(manager: tf.train.CheckpointManager, step: int, replaceable: tuple[str, ...] = ()) -> str:
    """Save `ckpt-<step>`; a checkpoint already on disk is never overwritten (one that resume
    found damaged, `replaceable`, excepted). A resumed run starts from the newest on disk, so
    its saves are newer; a collision means something else wrote into the folder."""
    prefix = fileio.join(manager.directory, f"{CHECKPOINT_NAME}-{step}")
    if prefix not in replaceable and fileio.exists(prefix + ".index"):
        raise UserError(f"checkpoint {prefix} is already on disk; not overwriting it (was it written by another "
                        "run into this folder?)")
    try:
        return manager.save(checkpoint_number=step)
    except OSError as exc:
        raise UserError(f"cannot save checkpoint {prefix}: {exc.strerror or exc}") from exc


class _DroppedRestoreFilter(logging_std.Filter):
    """TensorFlow warns, value by value (hundreds of lines), when the objects of a restore that failed
    half-way are garbage-collected; `find_and_restore` drops such attempts on purpose and says so."""

    NOISE = ("Detecting that an object or model or tf.train.Checkpoint is being deleted with unrestored values",
             "Value in checkpoint could not be found in the restored object")

    def filter(self, record: logging_std.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


logging_std.getLogger("tensorflow").addFilter(_DroppedRestoreFilter())


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


class Target(NamedTuple):
    """What a checkpoint is restored into: the checkpoint object and the variables that must come out finite."""

    checkpoint: tf.train.Checkpoint
    variables: dict[str, Any]
    result: Any = None  # what the caller wants back (the restored model)


class Found(NamedTuple):
    """What `find_and_restore` restored."""

    path: str | None  # the checkpoint restored; None: the folder holds none
    damaged: tuple[str, ...]  # checkpoints newer than `path` that are unusable (a resumed run saves them again)
    on_disk: tuple[str, ...]  # every checkpoint listed when `path` was restored, newest first
    target: Target | None = None  # the one `path` was restored into


def find_and_restore(target: Callable[[], Target], model_dir: str, partial: bool = False) -> Found:
    """Restore the newest usable checkpoint on disk in `model_dir`; the rule resume, eval and export share.

    A damaged or non-finite checkpoint is skipped with a warning naming it, and the one before
    it is tried. One that vanished while it was read (a running training's keep-limit rotation
    removed it) is no fault: the folder is listed again and its newest untried checkpoint read.
    `target()` is called for each try: a reader beside a training builds a fresh one, since a
    restore that failed half-way leaves its pending values on the objects it touched (and the
    next restore then reads the vanished files). A state file that is missing or disagrees with
    the listing is a warning naming the one used. When every checkpoint is unusable that is a
    `UserError`, which never advises deleting any.
    """
    paths, tried, damaged, rotated = list_checkpoints(model_dir), set(), [], []
    while True:
        todo = [p for p in paths if p not in tried]
        if not todo:
            break
        path = todo[0]
        tried.add(path)
        into = target()
        problem = restore_problem(into.checkpoint, path, into.variables, partial)
        if problem is None:
            if rotated:
                logging.info("%d newer checkpoint(s) were rotated away by the running training while read (%s); "
                             "used %s", len(rotated), ", ".join(os.path.basename(p) for p in rotated), path)
            note = _state_file_problem(model_dir)
            if note is not None:
                logging.warning("the checkpoint state file %s is %s; using %s, the newest usable checkpoint found "
                                "by listing the folder", fileio.join(model_dir, STATE_FILE), note, path)
            return Found(path, tuple(damaged), tuple(paths), into)
        before, paths = paths, list_checkpoints(model_dir)
        if path not in paths or paths[:1] != before[:1]:  # removed, or superseded, while read: not damaged
            rotated.append(path)
            continue
        logging.warning("checkpoint %s is %s; falling back to the one before it", path, problem)
        damaged.append(path)
    if damaged:
        raise UserError(f"no usable checkpoint in {model_dir}: all {len(damaged)} are damaged or hold NaN/Inf "
                        f"(newest {damaged[0]}); export or resume from a copy of an earlier run, or train under a "
                        "new --model-name")
    return Found(None, (), ())


def restore_model(model_dir: str, step: int | None = None):
    """(model, config, step) of a trained run, weights restored; for export and continued training.

    Without `step`, the newest usable checkpoint (a damaged newer one is skipped with a warning);
    a chosen `step` whose checkpoint is damaged is a `UserError` naming it.
    """
    saved = read_run_config(model_dir)
    if saved is None:
        raise UserError(f"{model_dir} has no {RUN_CONFIG}: not a model directory of this trainer")
    cfg = from_hparams(saved["hparams"])
    special = rtd.special_ids(vocab_files.load_vocab(fileio.join(model_dir, VOCAB)))

    def target() -> Target:  # a fresh model for every try (see find_and_restore)
        model = rtd.build_model(cfg, special)
        step_var = tf.Variable(0, dtype=tf.int64)
        return Target(tf.train.Checkpoint(model=model_checkpoint(model), step=step_var),
                      rtd.checkpoint_variables(model), (model, step_var))

    if step is None:
        found = find_and_restore(target, model_dir, partial=True)
        if found.target is None:
            raise UserError(f"no checkpoint in {model_dir}")
        into = found.target
    else:
        path = checkpoint_path(model_dir, step)
        into = target()
        problem = restore_problem(into.checkpoint, path, into.variables, partial=True)
        if problem is not None:
            raise UserError(f"checkpoint {path} is {problem}; choose another --step")
    model, step_var = into.result
    return model, cfg, int(step_var.numpy())


def is_own_checkpoint(path: str) -> bool:
    """Whether `path` (a run dir or checkpoint prefix) is a checkpoint of this trainer (`model/...` names)."""
    prefix = (list_checkpoints(path) or [None])[0] if fileio.isdir(path) else path
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
