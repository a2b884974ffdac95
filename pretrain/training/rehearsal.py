"""A rehearsal of the accelerator's training step on the CPU (`electra-pretrain --rehearse tpu`).

A TPU job fails late and expensively when its step holds an op XLA cannot compile, a shape
that is not static, or a dtype the mixed-precision policy did not expect. The rehearsal runs
what TPUStrategy would run, as far as a CPU can:

- the accelerator's precision: bfloat16 compute with float32 variables (TPU), or float16
  with dynamic loss scaling (GPU);
- the whole `iterations_per_loop` host loop (`Trainer.xla_host_loop`: masking, generator,
  discriminator, optimiser update, per-step scalars) as ONE XLA program with
  `jit_compile=True`, the batches fed from a tensor inside it, so no op runs outside XLA.
  An op XLA cannot compile is reported by name as one `error:` line. (TPUStrategy itself
  compiles the replica step and keeps the loop on the TPU host; compiling the loop as well
  is the stricter test);
- the static [batch, length] shapes of the real input pipeline (`pretrain.training.data`);
- the per-replica batch one core gets: `train_batch_size / num_tpu_cores` (v3-8: 8 cores).

The tokens are random ids of that shape: what is rehearsed is the program, not the data.
Sequence length, layers and steps may be scaled down for the CPU; the report says when they are.
"""
from __future__ import annotations

import dataclasses
import re
import time
from typing import NamedTuple

import numpy as np
from foundation.quiet_tf import tf

from foundation.errors import UserError
from pretrain.training import data
from pretrain.config import PretrainConfig, validate
from pretrain.model.rtd import special_ids
from pretrain.training.trainer import STEP_SCALARS, Trainer, host_call

DEVICES = ("tpu", "gpu")
PRECISION = {"tpu": "bfloat16", "gpu": "float16"}
_UNSUPPORTED_OP = re.compile(r"(\w+) \(No registered '\w+' OpKernel for XLA_\w+ devices compatible with node "
                             r"\{\{node ([^}]+)\}\}")
_CREATED_AT = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')
# What `jit_compile` on the CPU raises in TensorFlow's TPU build (measured with tensorflow-tpu 2.20.0).
NO_XLA_CPU = "could not find registered transfer manager for platform Host"


class Plan(NamedTuple):
    """What one rehearsal runs: the scaled config and how it departs from the run's."""

    cfg: PretrainConfig
    device: str
    precision: str
    per_replica_batch: int
    steps: int
    notes: list[str]  # each scaling, said in the report


class Result(NamedTuple):
    steps: int
    losses: list[float]  # per step
    compute_dtype: str
    variable_dtypes: list[str]  # distinct
    loss_scale: float | None  # float16 only: the dynamic scale after the steps
    compile_and_run_seconds: float


def per_replica_batch(cfg: PretrainConfig, device: str) -> int:
    """The micro batch one replica gets: one TPU core of `num_tpu_cores`, or one of `num_gpus` GPUs."""
    replicas = cfg.num_tpu_cores if device == "tpu" else max(cfg.num_gpus or 1, 1)
    micro = cfg.train_batch_size // cfg.gradient_accumulation_steps
    if micro % replicas:
        raise UserError(f"hparam 'train_batch_size' = {cfg.train_batch_size}: the micro batch {micro} is not "
                        f"divisible by the {replicas} {device.upper()} replicas")
    return micro // replicas


def plan(cfg: PretrainConfig, device: str, *, max_seq_length: int | None = None, steps: int = 2,
         num_hidden_layers: int | None = None) -> Plan:
    """The run's step for one replica of `device`, at `max_seq_length` and with `num_hidden_layers`
    (default: the run's) for `steps` steps. XLA's CPU compiler needs minutes and gigabytes for the
    12 layers of `small`; fewer layers of the same shapes compile in seconds."""
    if device not in DEVICES:
        raise UserError(f"--rehearse must be one of {', '.join(DEVICES)}, got {device!r}")
    length = max_seq_length or cfg.max_seq_length
    layers = num_hidden_layers or cfg.num_hidden_layers
    if steps < 1:
        raise UserError(f"--rehearse-steps must be at least 1, got {steps}")
    if length > cfg.max_seq_length:
        raise UserError(f"--rehearse-seq-length {length} exceeds the run's max_seq_length {cfg.max_seq_length}")
    if layers > cfg.num_hidden_layers:
        raise UserError(f"--rehearse-layers {layers} exceeds the run's num_hidden_layers {cfg.num_hidden_layers}")
    batch = per_replica_batch(cfg, device)
    notes = []
    if layers < cfg.num_hidden_layers:
        notes.append(f"num_hidden_layers scaled down from {cfg.num_hidden_layers} to {layers} for the CPU "
                     "(each layer's shapes unchanged)")
    if length < cfg.max_seq_length:
        notes.append(f"max_seq_length scaled down from {cfg.max_seq_length} to {length} for the CPU")
    if steps < cfg.iterations_per_loop:
        notes.append(f"{steps} of iterations_per_loop={cfg.iterations_per_loop} steps per host call "
                     "(the same compiled loop, run fewer times)")
    scaled = validate(dataclasses.replace(
        cfg, train_batch_size=batch * cfg.gradient_accumulation_steps, eval_batch_size=batch, max_seq_length=length,
        iterations_per_loop=steps, num_hidden_layers=layers, precision=PRECISION[device], use_tpu=False, num_gpus=0))
    return Plan(scaled, device, PRECISION[device], batch, steps, notes)


class TensorBatches:
    """`next()` inside the compiled loop: the i-th of stacked batches, counted by a variable,
    so the batches enter the XLA program as one tensor and nothing runs outside it."""

    def __init__(self, batches: dict[str, tf.Tensor]):
        self.batches = batches
        self.taken = tf.Variable(0, dtype=tf.int32, trainable=False)

    def __next__(self) -> dict[str, tf.Tensor]:
        i = self.taken.assign_add(1) - 1
        return {k: tf.gather(v, i) for k, v in self.batches.items()}


def random_batches(cfg: PretrainConfig, vocab: list[str], count: int) -> dict[str, tf.Tensor]:
    """`count` batches of [per-replica batch, max_seq_length] ids: [CLS] tokens [SEP], no padding."""
    special = special_ids(vocab)
    shape = (count, cfg.train_batch_size // cfg.gradient_accumulation_steps, cfg.max_seq_length)
    ids = np.random.default_rng(cfg.seed).integers(max(special) + 1, len(vocab), size=shape, dtype=np.int32)
    ids[..., 0], ids[..., -1] = special.cls, special.sep
    return {"input_ids": tf.constant(ids), "input_mask": tf.ones(shape, tf.int32),
            "segment_ids": tf.zeros(shape, tf.int32)}


def check_static_input_shapes(cfg: PretrainConfig) -> None:
    """The real input pipeline's batches must have a fully static shape, as XLA on a TPU needs."""
    spec = data.train_dataset(["unread.tfrecord"], max_seq_length=cfg.max_seq_length,
                              batch_size=cfg.train_batch_size // cfg.gradient_accumulation_steps, seed=0,
                              shuffle_buffer=2, vocab_size=cfg.vocab_size, examples_per_shard=[1]).element_spec
    loose = {k: s.shape.as_list() for k, s in spec.items() if not s.shape.is_fully_defined()}
    if loose:
        raise UserError(f"the input pipeline's batches have non-static shapes {loose}: XLA on a TPU needs "
                        "static shapes (batch with drop_remainder=True, fixed max_seq_length)")


def xla_failure(exc: Exception) -> str | None:
    """The ops XLA refused, with their nodes and where the first was created; None if not that."""
    text = str(exc)
    ops = list(dict.fromkeys(_UNSUPPORTED_OP.findall(text)))
    if not ops:
        return None
    names = ", ".join(f"{op} (node {node})" for op, node in ops)
    created = text.split("The op is created at:", 1)[1] if "The op is created at:" in text else ""
    sites = _CREATED_AT.findall(created.split("\n\n", 1)[0])
    where = f"; created at {sites[-1][0]}:{sites[-1][1]} in {sites[-1][2]}" if sites else ""
    return (f"XLA cannot compile op {names} in the training loop{where}: a TPU would fail on it; "
            "fix: replace it with an op XLA compiles, or move it out of the step (into the input pipeline)")


def build(p: Plan, vocab: list[str]) -> Trainer:
    """A trainer for one replica under the default strategy, at the accelerator's precision."""
    if len(vocab) != p.cfg.vocab_size:
        raise UserError(f"hparam 'vocab_size' = {p.cfg.vocab_size} but the vocab has {len(vocab)} tokens")
    check_static_input_shapes(p.cfg)
    return Trainer(p.cfg, tf.distribute.get_strategy(), vocab, p.precision)


def run(trainer: Trainer, p: Plan, vocab: list[str]) -> Result:
    """Compile the whole host loop with XLA and run `p.steps` steps; UserError names what failed."""
    batches = TensorBatches(random_batches(p.cfg, vocab, p.steps * p.cfg.gradient_accumulation_steps))
    loop = trainer.xla_host_loop()
    start = time.perf_counter()
    try:
        call = host_call(loop(batches, tf.constant(p.steps, tf.int64)))
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as exc:
        message = xla_failure(exc)
        if message is None:
            raise
        raise UserError(message) from None
    except tf.errors.NotFoundError as exc:
        if NO_XLA_CPU not in str(exc):
            raise
        raise UserError(f"this TensorFlow {tf.__version__} has no XLA compiler for the CPU (the TPU build, "
                        "tensorflow-tpu, has none), so the rehearsal cannot run here; fix: rehearse in an "
                        "environment with the CPU build (pip install -e .[cpu], as `make test` sets up)") from None
    seconds = time.perf_counter() - start
    losses = [float(x) for x in call.per_step[:, STEP_SCALARS.index("loss/total")]]
    if not call.finite:
        raise UserError(f"non-finite loss under {p.precision} in the XLA-compiled step: per-step losses {losses}")
    if int(trainer.step.numpy()) != p.steps or len(losses) != p.steps:
        raise UserError(f"the XLA-compiled loop ran {int(trainer.step.numpy())} steps and returned {len(losses)} "
                        f"per-step rows; asked for {p.steps}")
    variable_dtypes = sorted({v.dtype for v in trainer.model.trainable_variables})
    if variable_dtypes != ["float32"]:
        raise UserError(f"{p.precision} should keep float32 variables, found {variable_dtypes}")
    compute = trainer.model.dtype_policy.compute_dtype
    if compute != p.precision:
        raise UserError(f"the model computes in {compute}, expected {p.precision}")
    scale = getattr(trainer.optimizer, "dynamic_scale", None)
    return Result(p.steps, losses, compute, variable_dtypes, None if scale is None else float(scale.numpy()), seconds)


def report(p: Plan, r: Result, preset: str) -> list[str]:
    """The lines `electra-pretrain --rehearse` prints."""
    where = "one v3-8 TPU core" if p.device == "tpu" else "one GPU"
    lines = [f"rehearsal of the {p.device.upper()} step on the CPU ({preset}): per-replica batch {p.per_replica_batch} "
             f"({where}), max_seq_length {p.cfg.max_seq_length}, {p.steps} step(s) per host call",
             *[f"scaled: {n}" for n in p.notes],
             f"ok   whole host loop compiled by XLA (jit_compile=True), no op outside it: {r.steps} steps in "
             f"{r.compile_and_run_seconds:.1f} s (compile + run)",
             f"ok   {r.compute_dtype} compute, {'/'.join(r.variable_dtypes)} variables",
             f"ok   finite loss: {', '.join(f'{x:.4f}' for x in r.losses)}",
             "ok   static input shapes [batch, max_seq_length] in the input pipeline"]
    if r.loss_scale is not None:
        lines.append(f"ok   float16 dynamic loss scale {r.loss_scale:g} after {r.steps} steps "
                     "(halved at each overflow, that step's update skipped)")
    return lines


def rehearse(cfg: PretrainConfig, vocab: list[str], device: str, *, max_seq_length: int | None = None,
             steps: int = 2, num_hidden_layers: int | None = None, preset: str = "") -> list[str]:
    """Plan, build and run the rehearsal; the report's lines."""
    p = plan(cfg, device, max_seq_length=max_seq_length, steps=steps, num_hidden_layers=num_hidden_layers)
    return report(p, run(build(p, vocab), p, vocab), preset or f"model_size {cfg.model_size}")
