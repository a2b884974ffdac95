"""Which `tf.distribute` strategy and which precision a run uses, from its hparams.

One training step serves every device: TPUStrategy for a Cloud TPU (a TPU VM's own TPU
when `tpu_name` is "local", a multi-host slice through its name, from worker 0),
MirroredStrategy when GPUs are visible, the default strategy on the CPU. Tests make two
logical CPUs so the multi-replica path runs here too.
"""
from __future__ import annotations

import fcntl
import os
from typing import NamedTuple

from foundation.errors import UserError
from foundation import tpu_host

PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")
LIBTPU_LOCKFILE = "/tmp/libtpu_lockfile"  # libtpu's lock on this VM's TPU (OpenXLA TryAcquireTpuLock, lockf)


def set_logical_cpu_devices(n: int) -> None:
    """Split the CPU into `n` logical devices; call before TensorFlow creates its devices.

    A no-op when at least `n` logical CPUs already exist (e.g. a second test module).
    """
    from foundation.quiet_tf import tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) >= n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as exc:
        raise RuntimeError(
            f"cannot split the CPU into {n} logical devices: TensorFlow already initialised its devices "
            "(call set_logical_cpu_devices before any TensorFlow op)") from exc


def _tpu_strategy(tpu_name: str | None, tpu_zone: str | None, gcp_project: str | None, num_tpu_cores: int):
    """TPUStrategy on `tpu_name` ("local": this TPU VM's own TPU), after refusing, before the TPU system
    is initialised, what cannot work on this host (foundation/tpu_host.py)."""
    host = tpu_host.read_tpu_host()
    name = tpu_host.resolver_name(tpu_name, num_tpu_cores, host, os.environ.get("TPU_LOAD_LIBRARY"))
    from foundation.quiet_tf import tf
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name, zone=tpu_zone, project=gcp_project)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except Exception as exc:  # resolver/connection errors come as many types (ValueError, NotFoundError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        fix = ("run on the TPU VM itself, or set tpu_name to the name of a TPU node" if name == "local" else
               "check that the TPU is READY (`gcloud compute tpus tpu-vm list`) and that tpu_name, tpu_zone "
               "and gcp_project name it, or set tpu_name to 'local' when running on the TPU VM")
        if name == "local" and host is None:  # e.g. `electra-demo --preset small` on a laptop
            fix = ("this machine is not a TPU VM: to train on its CPU or GPU set \"use_tpu\": false (--hparams "
                   "'{\"use_tpu\": false}'); or run on the TPU VM, or set tpu_name to the name of a TPU node")
        if name == "local" and tpu_lock_taken():
            fix = (f"another process holds this VM's TPU (libtpu's lock {LIBTPU_LOCKFILE}): a run started by "
                   "scripts/train.sh (scripts/stop.sh stops it) or any Python that imported TensorFlow's TPU build; "
                   f"find it with: sudo lsof -w /dev/accel* {LIBTPU_LOCKFILE}")
        raise UserError(f"cannot reach TPU {name!r} (zone={tpu_zone}, project={gcp_project}): {first}; {fix}") from None
    if strategy.num_replicas_in_sync != num_tpu_cores:
        raise UserError(
            f"TPU {name!r} has {strategy.num_replicas_in_sync} cores but num_tpu_cores={num_tpu_cores}; "
            f"set num_tpu_cores to {strategy.num_replicas_in_sync}")
    return strategy


def tpu_lock_taken() -> bool:
    """True when another process holds libtpu's lock, so no TPU client in this process can start.

    Asked only once the TPU could not be reached (the process then exits): if this process held
    the lock itself, closing the probe's descriptor would release it (POSIX record locks).
    """
    try:
        fd = os.open(LIBTPU_LOCKFILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def make_strategy(*, use_tpu: bool, tpu_name: str | None, tpu_zone: str | None, gcp_project: str | None,
                  num_tpu_cores: int, num_gpus: int | None = None):
    """The strategy for this run: TPU if asked, else several hosts when `TF_CONFIG` names a
    cluster, else all (or `num_gpus`) GPUs, else the CPU.

    `num_gpus=None` uses every visible GPU; 0 forces the CPU.
    """
    from pretrain.training import multiworker

    from foundation.quiet_tf import tf
    if use_tpu:
        return _tpu_strategy(tpu_name, tpu_zone, gcp_project, num_tpu_cores)
    if multiworker.worker_info() is not None:  # before any device query initialises the runtime
        return multiworker.make_multiworker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is not None:
        if num_gpus > len(gpus):
            raise UserError(f"num_gpus={num_gpus} but only {len(gpus)} GPU(s) are visible")
        gpus = gpus[:num_gpus]
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.get_strategy()


def device_kind(strategy) -> str:
    """"tpu", "gpu" or "cpu": where the strategy's replicas run."""
    from foundation.quiet_tf import tf
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    if strategy is tf.distribute.get_strategy():  # the default strategy places ops on a GPU if any
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    else:
        devices = strategy.extended.worker_devices
    return "gpu" if any("GPU" in d.upper() for d in devices) else "cpu"


# CPU flags (Linux /proc/cpuinfo names) of native bfloat16 matrix instructions: oneDNN runs bfloat16
# matmuls on them at ~1.9x float32 (measured: BENCHMARKS.md); without them bfloat16 is emulated and slower.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them; empty where there is no /proc/cpuinfo."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_precision(flags: frozenset[str], jit_compile: bool = False) -> str:
    """bfloat16 where the CPU multiplies it natively, else float32.

    Not under XLA: XLA's CPU backend runs bfloat16 matmuls no faster than float32 (measured: 23.1 vs
    22.6 ms for 1024x1024, and the demo recipe 91 vs 86 CPU s; BENCHMARKS.md), so float32 there.
    """
    return "bfloat16" if not jit_compile and any(f in flags for f in BF16_CPU_FLAGS) else "float32"


def resolve_jit_compile(jit_compile: bool | str, kind: str) -> bool:
    """"auto" -> XLA on a TPU (which compiles the whole step in any case), not on a CPU (measured slower there
    with the payoff recipe: float32 98 vs 108-120 examples/s, bfloat16 84-93 vs 155-167; docs/pretraining.md),
    nor on a GPU (as before "auto" existed)."""
    return kind == "tpu" if jit_compile == "auto" else bool(jit_compile)


class Compute(NamedTuple):
    """How a run computes, resolved from its hparams and the device: the one place "auto" is decided."""

    precision: str  # float32 | bfloat16 | float16
    jit_compile: bool


def resolve_compute(precision: str, jit_compile: bool | str, strategy, flags: frozenset[str] | None = None) -> Compute:
    """`jit_compile` first (`resolve_jit_compile`), then the precision that is fastest with it (`resolve_precision`)."""
    jit = resolve_jit_compile(jit_compile, device_kind(strategy))
    return Compute(resolve_precision(precision, strategy, flags, jit), jit)


def resolve_precision(precision: str, strategy, flags: frozenset[str] | None = None, jit_compile: bool = False) -> str:
    """"auto" -> bfloat16 on TPU, float16 (with loss scaling) on GPU, and on the CPU bfloat16 when it has
    AVX512-BF16 or AMX (detected from `flags`, default this machine's) and XLA is off, else float32."""
    if precision not in PRECISION_CHOICES:
        raise UserError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if precision != "auto":
        return precision
    kind = device_kind(strategy)
    if kind == "cpu":
        return cpu_precision(cpu_flags() if flags is None else flags, jit_compile)
    return {"tpu": "bfloat16", "gpu": "float16"}[kind]


def keras_policy(precision: str) -> str:
    """The Keras dtype policy for a resolved precision: float32 variables, low-precision compute."""
    return {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[precision]
