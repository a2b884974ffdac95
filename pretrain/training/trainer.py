"""The training loop: a strategy-agnostic RTD step, several steps per host call, checkpoints.

The per-replica step masks first (cheap), all-reduces the token counts so every replica
divides by the global counts, then runs generator + discriminator forward/backward (XLA
with `jit_compile`) and applies the update; the optimiser sums gradients across replicas.
So one device and N replicas make the same update for the same global batch, and the same
code runs under the default, Mirrored and TPU strategies.
(Over 350 lines: the step, the host loop and the train/eval entry points share the Trainer's
state, strategy and compiled functions; split apart they would pass all of it around.)
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from typing import NamedTuple, Sequence

import numpy as np
from absl import logging

from foundation import console, fileio, lease
from foundation.quiet_tf import keras, tf
from data_prep import records, vocab_files
from foundation.errors import Interrupted, Terminated, UserError, disk_full
from pretrain.training import checkpoints, data, metrics, multiworker
from pretrain.config import PretrainConfig
from pretrain.model.rtd import (AUC_BINS, RtdModel, RtdOutputs, build_model, checkpoint_variables, rtd_loss, special_ids,
                          step_key)

SUM = tf.distribute.ReduceOp.SUM
STEP_SCALARS = ("loss/total", "loss/generator", "loss/discriminator", "generator/accuracy",
                "discriminator/accuracy", "discriminator/precision", "discriminator/recall", "learning_rate")
EVAL_KEY_OFFSET = 1 << 40  # eval noise keys never collide with training steps
REPLICA_SCOPE = "replica_step"  # name scope of everything the loop runs on the devices (tests read it)
DEGENERATE_DISC_LOSS = 0.01
DEGENERATE_GEN_ACCURACY = 0.01
BASE_RATE_MARGIN = 0.98  # a discriminator loss above this share of the base-rate loss has learnt ~nothing


class Run(NamedTuple):
    """Everything a training or eval run is built from, checked before any step."""

    cfg: PretrainConfig
    files: list[str]
    manifest: records.Manifest | None
    vocab: list[str]
    vocab_path: str

    @property
    def examples_per_shard(self) -> tuple[int, ...] | None:
        """Records per shard (the manifest's); None for data without a manifest (counted when read)."""
        return self.manifest.examples_per_shard if self.manifest is not None else None


def check_inputs(cfg: PretrainConfig, record_dir: str, vocab_path: str) -> Run:
    """Records, manifest and vocab against the hparams: one clear error, before anything is written."""
    vocab = vocab_files.load_vocab(vocab_path)
    if len(vocab) != cfg.vocab_size:
        raise UserError(f"hparam 'vocab_size' = {cfg.vocab_size} but {vocab_path} has {len(vocab)} tokens")
    manifest = records.check_record_dir(record_dir, cfg.max_seq_length, vocab_path, cfg.vocab_size)
    return Run(cfg, records.list_shards(record_dir), manifest, vocab, vocab_path)


def _zeros_like_outputs() -> RtdOutputs:
    z = tf.zeros([], tf.float32)
    h = tf.zeros([AUC_BINS], tf.float32)
    return RtdOutputs(*([z] * 9), h, h)


def _to_numpy(out: RtdOutputs) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in out._asdict().items()}


class LoopState(NamedTuple):
    """The host loop's state, carried on each replica's device; the loop returns replica 0's."""

    outputs: RtdOutputs  # summed over the steps run and the replicas
    finite: tf.Tensor  # False: a step's loss was non-finite; nothing after it was applied
    per_step: tf.Tensor  # [num_steps, len(STEP_SCALARS)]: the first `steps_run` rows are filled
    steps_run: tf.Tensor  # int32, the non-finite step included


class HostCall(NamedTuple):
    """What one host call of `Trainer.train_steps` returns."""

    outputs: RtdOutputs  # summed over its steps and replicas
    finite: bool  # False: stopped at a non-finite loss, whose update was not applied
    per_step: np.ndarray  # [steps run, len(STEP_SCALARS)], the non-finite step's row last


def host_call(state: LoopState) -> HostCall:
    """The loop's result on the host (the one transfer of a host call)."""
    return HostCall(state.outputs, bool(state.finite), state.per_step.numpy()[:int(state.steps_run)])


class Trainer:
    """Model, optimiser and compiled step functions under one strategy."""

    def __init__(self, cfg: PretrainConfig, strategy: tf.distribute.Strategy, vocab: list[str], precision: str,
                 jit_compile: bool | None = None):
        """`precision` and `jit_compile` resolved (`distribute.resolve_compute`); None: `cfg.jit_compile` resolved."""
        from pretrain.training.distribute import device_kind, keras_policy, resolve_jit_compile
        from pretrain.training.optimization import make_optimizer

        if jit_compile is None:
            jit_compile = resolve_jit_compile(cfg.jit_compile, device_kind(strategy))
        self.cfg = cfg
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.micro_batch = cfg.train_batch_size // cfg.gradient_accumulation_steps
        if self.micro_batch % self.replicas:
            raise UserError(f"hparam 'train_batch_size' = {cfg.train_batch_size}: the micro batch {self.micro_batch} "
                            f"must be divisible by the {self.replicas} replicas")
        if cfg.eval_batch_size % self.replicas:
            raise UserError(f"hparam 'eval_batch_size' = {cfg.eval_batch_size} must be divisible by the "
                            f"{self.replicas} replicas")
        keras.utils.set_random_seed(cfg.seed)
        with strategy.scope():
            self.model: RtdModel = build_model(cfg, special_ids(vocab), dtype=keras_policy(precision))
            self.optimizer = make_optimizer(
                learning_rate=cfg.learning_rate, num_train_steps=cfg.num_train_steps,
                num_warmup_steps=cfg.num_warmup_steps, weight_decay_rate=cfg.weight_decay_rate,
                lr_decay_power=cfg.lr_decay_power, optimizer=cfg.optimizer, clip_norm=cfg.clip_norm,
                gradient_accumulation_steps=cfg.gradient_accumulation_steps, precision=precision,
                adam_bias_correction=cfg.adam_bias_correction, lr_schedule=cfg.lr_schedule,
                decay_steps=cfg.lr_decay_steps)
            self.optimizer.build(self.model.trainable_variables)
            # counted by the replica step on the device: replica 0's increment is every replica's
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.checkpoint = checkpoints.make_checkpoint(self.model, self.optimizer, self.step)
        self._fb = tf.function(self._forward_backward, jit_compile=True) if jit_compile else self._forward_backward
        self._train_loop = tf.function(self._host_loop)
        self._eval_step = tf.function(self._eval_replicas)

    def checked_variables(self) -> dict:
        """The model's and the optimiser's float variables by name: what a checkpoint must hold finite."""
        named = dict(checkpoint_variables(self.model))
        named.update({f"optimizer/{getattr(v, 'path', v.name)}": v for v in self.optimizer.variables})
        return named

    # --- per replica ------------------------------------------------------------------
    def _rows(self, per_replica: int) -> tf.Tensor:
        ctx = tf.distribute.get_replica_context()
        first = tf.cast(ctx.replica_id_in_sync_group, tf.int64) * per_replica
        return first + tf.range(per_replica, dtype=tf.int64)

    def _forward_backward(self, batch, masked, key, rows, mlm_den, disc_den):
        with tf.GradientTape() as tape:
            out = self.model.step(batch["input_ids"], batch["input_mask"], batch["segment_ids"], masked,
                                  key=key, rows=rows, training=True)
            losses = rtd_loss(out, self.cfg, mlm_den, disc_den)
            scaled = self.optimizer.scale_loss(losses.total)
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        # zeros, not None, for variables outside the loss (the discriminator when disc_weight is 0)
        grads = [tf.zeros(v.shape, tf.float32) if g is None else g for g, v in zip(grads, variables)]
        return grads, out

    def _micro_step(self, batch, key):
        """Mask, all-reduce the token counts, forward and backward: (gradients, this replica's sums)."""
        per_replica = batch["input_ids"].shape[0]
        rows = self._rows(per_replica)
        masked = self.model.mask(batch["input_ids"], batch["input_mask"], key=key, rows=rows)
        ctx = tf.distribute.get_replica_context()
        mlm_den, disc_den = ctx.all_reduce(
            SUM, [tf.reduce_sum(masked.weights), tf.reduce_sum(tf.cast(batch["input_mask"], tf.float32))])
        return self._fb(batch, masked, key, rows, mlm_den, disc_den)

    def _start_state(self, per_step) -> LoopState:
        return LoopState(_zeros_like_outputs(), tf.constant(True), tf.identity(per_step), tf.constant(0, tf.int32))

    def _replica_step(self, batches, state: LoopState) -> LoopState:
        """One optimiser step on this replica's micro batches, entirely on the device.

        The step's sums are all-reduced here, so every replica holds the global ones and
        decides alike: a non-finite loss ends the loop at this step without its update (its
        gradients are replaced by NaN, which the optimiser skips), and the steps after it
        change nothing (no update, no step count, no row). With gradient accumulation the
        check is on the whole step's loss, before the last micro batch's call applies it.
        """
        with tf.name_scope(REPLICA_SCOPE):
            cfg = self.cfg
            ctx = tf.distribute.get_replica_context()
            active = state.finite
            step_out = _zeros_like_outputs()
            for micro, batch in enumerate(batches):
                key = step_key(cfg.seed, self.step * cfg.gradient_accumulation_steps + micro)
                grads, out = self._micro_step(batch, key)
                step_out = RtdOutputs(*[a + b for a, b in zip(step_out, ctx.all_reduce(SUM, list(out)))])
                if micro == len(batches) - 1:  # this call applies the step's update
                    losses = rtd_loss(step_out, cfg, step_out.mlm_count, step_out.disc_count)
                    apply = active & tf.math.is_finite(losses.total)
                    grads = [tf.where(apply, g, tf.constant(np.nan, g.dtype)) for g in grads]
                self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            self.step.assign_add(tf.cast(apply, tf.int64))
            written = tf.tensor_scatter_nd_update(state.per_step, [[state.steps_run]],
                                                  [self._step_scalars(step_out, losses)])
            return LoopState(RtdOutputs(*[tf.where(active, a + b, a) for a, b in zip(state.outputs, step_out)]),
                             apply, tf.where(active, written, state.per_step),
                             state.steps_run + tf.cast(active, tf.int32))

    def _eval_replica(self, batch, key):
        rows = self._rows(batch["input_ids"].shape[0])
        masked = self.model.mask(batch["input_ids"], batch["input_mask"], key=key, rows=rows)
        return self.model.step(batch["input_ids"], batch["input_mask"], batch["segment_ids"], masked,
                               key=key, rows=rows, training=False)

    # --- cross replica ----------------------------------------------------------------
    def _reduce(self, out) -> RtdOutputs:
        return RtdOutputs(*[self.strategy.reduce(SUM, t, axis=None) for t in out])

    def _host_loop(self, iterator, num_steps) -> LoopState:
        """Up to `num_steps` optimiser steps in one call; the host talks to the devices once.

        The loop body only feeds the batches and runs `_replica_step`: the step counter, the
        per-step scalars and the non-finite check stay on the devices (loop state per
        replica), and the host gets the loop's result once, after the last step: the copy of
        replica 0, since every replica holds the same all-reduced values.
        """
        # the rows are made on the host: a TPU program compiles for its inputs' shapes, but
        # cannot make a tensor whose shape is a value it receives
        rows = tf.zeros([num_steps, len(STEP_SCALARS)], tf.float32)
        state = self.strategy.run(self._start_state, args=(rows,))
        for _ in tf.range(num_steps):
            batches = [next(iterator) for _ in range(self.cfg.gradient_accumulation_steps)]
            state = self.strategy.run(self._replica_step, args=(batches, state))
        return tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], state)

    def train_steps(self, iterator, num_steps: int) -> HostCall:
        """Run `num_steps` optimiser steps in one host call (fewer if a loss is non-finite)."""
        return host_call(self._train_loop(iterator, tf.constant(num_steps, tf.int64)))

    def xla_host_loop(self):
        """`_host_loop` as ONE XLA program (`jit_compile=True`): every op of the loop must compile,
        as on a TPU; `pretrain.training.rehearsal` runs it on the CPU."""
        return tf.function(self._host_loop, jit_compile=True)

    def _step_scalars(self, out: RtdOutputs, losses) -> tf.Tensor:
        div = tf.math.divide_no_nan
        return tf.stack([
            losses.total, losses.mlm, losses.disc, div(out.mlm_correct, out.mlm_count),
            div(out.disc_correct, out.disc_count), div(out.true_pos, out.pred_pos), div(out.true_pos, out.replaced),
            tf.cast(self.learning_rate(), tf.float32)])

    def learning_rate(self) -> tf.Tensor:
        opt = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        return tf.convert_to_tensor(opt.learning_rate)

    def _eval_replicas(self, batch, key):
        return self._reduce(self.strategy.run(self._eval_replica, args=(batch, key)))

    # --- datasets ---------------------------------------------------------------------
    def train_iterator(self, files: list[str], start_step: int, examples_per_shard: Sequence[int] | None = None):
        """Batches from the data position of `start_step` (every step used `train_batch_size` examples).

        `examples_per_shard` (the manifest's) lets the position be found by arithmetic; None
        counts the records first (see `data.train_dataset`).
        """
        cfg = self.cfg
        consumed = start_step * cfg.train_batch_size

        def make(batch_size, ctx):
            return data.train_dataset(files, max_seq_length=cfg.max_seq_length, batch_size=batch_size,
                                      seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer, vocab_size=cfg.vocab_size,
                                      examples_per_shard=examples_per_shard,
                                      skip_examples=consumed // ctx.num_input_pipelines, input_context=ctx)

        return iter(data.distributed(self.strategy, make, self.micro_batch))

    def evaluate(self, files: list[str], num_steps: int | None = None) -> dict[str, float]:
        cfg = self.cfg

        def make(batch_size, ctx):
            return data.eval_dataset(files, max_seq_length=cfg.max_seq_length, batch_size=batch_size,
                                     vocab_size=cfg.vocab_size, input_context=ctx)

        totals = None
        for i, batch in enumerate(data.distributed(self.strategy, make, cfg.eval_batch_size)):
            if num_steps is not None and i >= num_steps:
                break
            out = _to_numpy(self._eval_step(batch, tf.constant(EVAL_KEY_OFFSET + cfg.seed * 1_000_003 + i, tf.int64)))
            totals = out if totals is None else {k: totals[k] + out[k] for k in out}
        if totals is None:
            raise UserError(f"eval data holds fewer than eval_batch_size={cfg.eval_batch_size} examples")
        return metrics.summarize(totals, cfg.gen_weight, cfg.disc_weight)


class TrainResult(NamedTuple):
    step: int
    metrics: dict[str, float]  # of the last host call


def _make_strategy(cfg: PretrainConfig):
    from pretrain.training.distribute import make_strategy

    return make_strategy(use_tpu=cfg.use_tpu, tpu_name=cfg.tpu_name, tpu_zone=cfg.tpu_zone,
                         gcp_project=cfg.gcp_project, num_tpu_cores=cfg.num_tpu_cores, num_gpus=cfg.num_gpus)


def make_trainer(run: Run, strategy=None) -> Trainer:
    from pretrain.training.distribute import resolve_compute

    strategy = strategy or _make_strategy(run.cfg)
    compute = resolve_compute(run.cfg.precision, run.cfg.jit_compile, strategy)
    logging.info("strategy %s with %d replica(s), precision %s, jit_compile %s", type(strategy).__name__,
                 strategy.num_replicas_in_sync, compute.precision, compute.jit_compile)
    return Trainer(run.cfg, strategy, run.vocab, compute.precision, compute.jit_compile)


def init_weights(trainer: Trainer, path: str, discriminator_from_generator: bool = False) -> str:
    """`--init-checkpoint`: weights only, from a Hugging Face folder, an original TF1 checkpoint or a run of ours;
    with `discriminator_from_generator`, the discriminator's encoder then starts as the loaded generator's."""
    cfg = trainer.model.cfg
    if discriminator_from_generator:
        gen, disc = cfg.generator_dims(), cfg.discriminator_dims()
        differ = [f"{k} {getattr(gen, k)} vs {getattr(disc, k)}" for k in ("hidden_size", "num_hidden_layers",
                  "intermediate_size", "num_attention_heads") if getattr(gen, k) != getattr(disc, k)]
        if differ:
            raise UserError(f"--init-discriminator-from-generator needs the generator the discriminator's size "
                            f"(generator_hidden_size 1.0, generator_layers 1.0); generator vs discriminator: "
                            f"{', '.join(differ)}")
    if not fileio.exists(fileio.join(path, "config.json")) and checkpoints.is_own_checkpoint(path):
        loaded = checkpoints.restore_weights(trainer.model, path)
    else:
        from pretrain.conversion.importing import init_from_external

        loaded = init_from_external(trainer.model, path, need_generator=discriminator_from_generator)
    if discriminator_from_generator:
        loaded += f"; discriminator encoder from the generator ({trainer.model.discriminator_from_generator()} weights)"
    return loaded


def train(run: Run, model_dir: str, *, init_checkpoint: str | None = None, strategy=None,
          stop_at_step: int | None = None, discriminator_from_generator: bool = False) -> TrainResult:
    """Train to `num_train_steps`, resuming from the latest usable checkpoint in `model_dir` if there is one.

    A fresh run with `branch_from` starts from that checkpoint's whole state instead (its step too).
    `stop_at_step` ends this call there, with a checkpoint, as if the run were killed: the schedule
    is still the whole run's, and the next call resumes.

    Across hosts (`TF_CONFIG`), every worker restores from `model_dir` but only the chief
    writes there; the others save into a scratch directory, since saving is collective.
    """
    info = multiworker.worker_info()
    is_chief = info is None or info.is_chief
    # the chief (the one writer of model_dir) holds its lease: a second run into it is refused
    with lease.hold(model_dir) if is_chief else contextlib.nullcontext() as held, \
            multiworker.checkpoint_dir(model_dir, info) as save_dir:
        return _train(run, model_dir, save_dir, held, init_checkpoint, strategy, stop_at_step,
                      discriminator_from_generator)


def _train(run: Run, model_dir: str, save_dir: str, held: lease.Lease | None, init_checkpoint: str | None,
           strategy, stop_at_step: int | None = None, discriminator_from_generator: bool = False) -> TrainResult:
    cfg = run.cfg
    checkpoints.check_model_dir(model_dir, cfg, run.vocab_path)
    trainer = make_trainer(run, strategy)
    # Everything that can refuse the start is read before anything is written into model_dir.
    # the one writer of model_dir: nothing vanishes under it, so the trainer's own objects are restored into
    found = checkpoints.find_and_restore(lambda: checkpoints.Target(trainer.checkpoint, trainer.checked_variables()),
                                         model_dir)
    last_good = found.path
    if last_good:
        logging.info("resumed from %s at step %d", last_good, int(trainer.step))
    elif cfg.branch_from:
        source = checkpoints.restore_branch(trainer.checkpoint, cfg.branch_from, cfg, run.vocab_path,
                                           trainer.checked_variables())
        if int(trainer.step) >= cfg.num_train_steps:
            raise UserError(f"hparam 'branch_from' = {source!r} is at step {int(trainer.step)}, not before "
                            f"num_train_steps {cfg.num_train_steps}: set num_train_steps to its step plus the decay")
        logging.info("branched from %s at step %d", source, int(trainer.step))
    elif init_checkpoint:
        logging.info("initialised weights from %s", init_weights(trainer, init_checkpoint, discriminator_from_generator))
    if held is not None:
        checkpoints.write_run_files(model_dir, cfg, run.vocab_path, run.manifest)
        # the manager's keep-limit rotation counts the checkpoints on disk, less the damaged newer ones it redoes
        checkpoints.sync_state_file(model_dir, [p for p in found.on_disk if p not in found.damaged])
    manager = checkpoints.make_manager(trainer.checkpoint, save_dir, cfg.keep_checkpoint_max)
    start = int(trainer.step.numpy())
    end = cfg.num_train_steps if stop_at_step is None else min(stop_at_step, cfg.num_train_steps)
    if start >= end:
        logging.info("already trained to step %d of %d", start, end)
        return TrainResult(start, {})
    iterator = trainer.train_iterator(run.files, start, run.examples_per_shard)
    progress = {"step": start}
    watchdog = None  # armed once the first host call returned: see `_watchdog`
    writer = tf.summary.create_file_writer(fileio.join(save_dir, "train"))
    num_examples = run.manifest.num_examples if run.manifest is not None else None
    ceiling = metrics.divergence_ceiling(cfg.vocab_size, cfg.gen_weight, cfg.disc_weight)
    summary: dict[str, float] = {}
    warned: set[str] = set()
    heartbeat = console.Heartbeat(lambda: f"training: step {progress['step']} done, running the next "
                                          f"{cfg.iterations_per_loop} (iterations_per_loop; a line after them)")

    def stop(why: str) -> UserError:
        return UserError(f"{why}; training stopped, last good checkpoint: {last_good or 'none (nothing was saved)'}. "
                         "Lower learning_rate, check the data, or use precision float32")

    try:
        heartbeat.start()
        with writer.as_default(), data.named_input_errors(run.files, cfg.vocab_size):
            step = start
            last_save = time.monotonic()  # the resumed checkpoint (or none) is this run's starting point
            calls = 0
            several_workers = multiworker.worker_info() is not None
            while step < end:
                next_save = (step // cfg.save_checkpoints_steps + 1) * cfg.save_checkpoints_steps
                n = min(cfg.iterations_per_loop, next_save - step, end - step)
                t0 = time.perf_counter()
                calls += 1
                with _profiled(cfg.profile_host_call == calls, fileio.join(save_dir, "train")):
                    call = trainer.train_steps(iterator, n)
                _write_step_summaries(call.per_step, step, cfg.log_every_steps)
                step = int(trainer.step.numpy())
                progress["step"] = step
                watchdog = watchdog or _watchdog(cfg, progress)
                if watchdog is not None:
                    watchdog.beat()
                heartbeat.beat()
                if not call.finite:  # that step's update was not applied
                    raise stop(f"non-finite loss at step {step + 1}")
                worst = float(call.per_step[:, STEP_SCALARS.index("loss/total")].max())
                if worst > ceiling:
                    raise stop(f"training diverged by step {step}: loss {worst:.4g} is above {ceiling:.4g} "
                               f"({metrics.DIVERGENCE_FACTOR:g}x the loss of a uniform guess)")
                summary = metrics.summarize(_to_numpy(call.outputs), cfg.gen_weight, cfg.disc_weight)
                rate = len(call.per_step) * cfg.train_batch_size / max(time.perf_counter() - t0, 1e-9)
                _log_progress(cfg, step, summary, float(trainer.learning_rate()), rate, num_examples, warned)
                tf.summary.scalar("discriminator/auc", summary["discriminator_auc"], step=step)
                tf.summary.scalar("examples_per_second", rate, step=step)
                writer.flush()
                due = _save_due(cfg, step, time.monotonic() - last_save, end)
                if cfg.save_checkpoints_secs > 0 and several_workers:  # each has its own clock
                    due = _any_worker(trainer.strategy, due)
                if due:
                    bad = checkpoints.non_finite(trainer.checked_variables())
                    if bad:
                        raise stop(f"after step {step} {len(bad)} variables hold NaN/Inf (e.g. {bad[0]}), so "
                                   "they were not saved")
                    if held is not None:
                        held.check()
                    last_good = checkpoints.save(manager, step, found.damaged if save_dir == model_dir else ())
                    last_save = time.monotonic()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (run_cli raises `Terminated` for it)
        raise Interrupted(f"{'terminated' if isinstance(exc, Terminated) else 'interrupted'} at step "
                          f"{progress['step']}; last checkpoint: {last_good or 'none (nothing was saved)'}; rerun the "
                          "same command to resume from it", exc) from None
    except (OSError, tf.errors.OpError) as exc:
        if not disk_full(exc):
            raise
        reason = exc.strerror if isinstance(exc, OSError) else exc.message.splitlines()[0][:300]
        raise UserError(f"disk full writing {save_dir} at step {progress['step']} ({reason}); last checkpoint: "
                        f"{last_good or 'none (nothing was saved)'}; free space and rerun the same command to resume "
                        "from it") from None
    finally:
        heartbeat.stop()
        if watchdog is not None:
            watchdog.stop()
    logging.info("trained %d steps to step %d; checkpoints in %s", step - start, step, model_dir)
    return TrainResult(step, summary)


@contextlib.contextmanager
def _profiled(active: bool, logdir: str):
    """A TensorBoard profile (Profile tab) of one host call into `logdir`/plugins/profile, when
    `active`: the device's time per op and the host's wait for input show an input-bound step."""
    if not active:
        yield
        return
    tf.profiler.experimental.start(logdir)
    try:
        yield
    finally:
        tf.profiler.experimental.stop()
        logging.info("profile of this host call written to %s/plugins/profile", logdir)


def _save_due(cfg: PretrainConfig, step: int, secs_since_save: float, end: int) -> bool:
    """Save after this host call? Every `save_checkpoints_steps` steps, at the end (`end`: num_train_steps or
    --stop-at-step), and when `save_checkpoints_secs` of wall-clock time passed since the last save,
    whichever comes first: a spot or preemptible TPU loses at most that much time (Google advises about an hour)."""
    return (step % cfg.save_checkpoints_steps == 0 or step == end
            or 0 < cfg.save_checkpoints_secs <= secs_since_save)


def _any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """One answer for every worker to a question each answers with its own clock: True if any says so,
    so every worker saves at the same steps (TensorFlow asks all workers of a run to take part in a save)."""
    votes = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return float(strategy.reduce(SUM, votes, axis=None)) > 0


def _write_step_summaries(per_step: np.ndarray, first_step: int, every: int) -> None:
    """TensorBoard scalars of each step of a host call (rows are steps first_step+1, ...)."""
    for i, row in enumerate(per_step):
        step = first_step + i + 1
        if step % every == 0 or step == first_step + 1:
            for name, value in zip(STEP_SCALARS, row):
                tf.summary.scalar(name, float(value), step=step)


def _log_progress(cfg: PretrainConfig, step: int, m: dict[str, float], lr: float, rate: float,
                  num_examples: int | None, warned: set[str] | None = None) -> None:
    """The step's line, and a warning when a run enters a degenerate state.

    `warned` (the states warned about so far, kept by the caller for the run) makes each warning
    one line when the state starts and one INFO line when it ends, not a line per log line.
    """
    warned = set() if warned is None else warned
    epochs = f"{step * cfg.train_batch_size / num_examples:.2f}" if num_examples else "?"
    logging.info("step %d/%d (epoch %s): loss %.4f gen %.4f disc %.4f gen_acc %.3f disc_auc %.3f lr %.2e %.1f ex/s",
                 step, cfg.num_train_steps, epochs, m["loss"], m["generator_loss"], m["discriminator_loss"],
                 m["generator_accuracy"], m["discriminator_auc"], lr, rate)
    if step <= cfg.num_warmup_steps:
        return
    base = m["discriminator_base_rate_loss"]  # 0 when MLM only: no replaced tokens
    hint = "" if cfg.adam_bias_correction or cfg.optimizer != "adamw" else (
        "; on a short schedule set adam_bias_correction")
    states = {  # cause: (holds now, the warning, the line when it no longer holds)
        "collapse": (cfg.disc_weight > 0 and m["discriminator_loss"] < DEGENERATE_DISC_LOSS,
                     f"discriminator loss {m['discriminator_loss']:.4g} is ~0 after warm-up: the generator is too weak "
                     "to fool it (raise generator_hidden_size)",
                     f"discriminator loss {m['discriminator_loss']:.4g} is above ~0 again"),
        "generator": (m["generator_accuracy"] < DEGENERATE_GEN_ACCURACY,
                      f"generator accuracy {m['generator_accuracy']:.4g} is ~0 after warm-up: the generator is not "
                      "learning (check the data and learning_rate)",
                      f"generator accuracy {m['generator_accuracy']:.4g}: the generator is learning"),
        "base_rate": (base > 0 and m["discriminator_loss"] > BASE_RATE_MARGIN * base,
                      f"discriminator loss {m['discriminator_loss']:.4f} is at the base rate {base:.4f} "
                      f"({100 * m['replaced_fraction']:.1f}% of tokens replaced): it predicts that share everywhere and "
                      "uses no context yet; normal early on, but a model exported in this state fine-tunes no better "
                      f"than random init{hint} (docs/pretraining.md)",
                      f"discriminator loss {m['discriminator_loss']:.4f} is below its base rate {base:.4f}: it uses "
                      "context"),
    }
    for cause, (holds, warning, cleared) in states.items():
        if holds and cause not in warned:
            warned.add(cause)
            logging.warning("%s", warning)
        elif not holds and cause in warned:
            warned.discard(cause)
            logging.info("step %d: %s now", step, cleared)


def _watchdog(cfg: PretrainConfig, progress: dict[str, int]):
    """A hang watchdog (H4's) fed after every host call; `progress` is read from its thread.

    Started after the first host call returned, not before it: that call holds the input's
    start-up (a resume reads up to a shard and the shuffle buffer per pipeline, from gs:// on a
    TPU) and the step's compilation, neither bounded by a step's time, so a timeout sized for
    steps would kill a slow start every time, restart after restart. The cost: a hang inside
    the first host call is not caught.
    """
    if cfg.watchdog_seconds <= 0:
        return None
    from pretrain.training.watchdog import Watchdog

    dog = Watchdog(cfg.watchdog_seconds,
                   lambda: f"training: last finished step {progress['step']}, waiting for the next "
                           f"{cfg.iterations_per_loop} step(s)")
    dog.start()
    return dog


def evaluate(run: Run, model_dir: str, *, strategy=None) -> dict[str, float]:
    """Metrics of the latest checkpoint on `run.files`; printed and saved as eval_results.json."""
    strategy = strategy or _make_strategy(run.cfg)

    def target() -> checkpoints.Target:  # beside a running training: a fresh trainer per try (find_and_restore)
        fresh = make_trainer(run, strategy)
        return checkpoints.Target(fresh.checkpoint, fresh.checked_variables(), fresh)

    found = checkpoints.find_and_restore(target, model_dir, partial=True)
    if found.target is None:
        raise UserError(f"no checkpoint in {model_dir}")
    trainer = found.target.result
    with data.named_input_errors(run.files, run.cfg.vocab_size):
        result = trainer.evaluate(run.files, run.cfg.num_eval_steps)
    result["step"] = int(trainer.step.numpy())
    out = fileio.join(model_dir, "eval_results.json")
    fileio.write_text(out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    logging.info("eval at step %d: %s -> %s", result["step"],
                 ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.items()) if isinstance(v, float)
                           and not math.isnan(v)), out)
    return result
