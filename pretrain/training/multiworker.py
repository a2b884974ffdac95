"""Training across hosts: the cluster from `TF_CONFIG`, the strategy, and who writes checkpoints.

Several GPU (or CPU) hosts run the same command, each with a `TF_CONFIG` naming the whole
cluster and its own place in it; `tf.distribute.MultiWorkerMirroredStrategy` then all-reduces
gradients across them, so a step on W workers equals one step on the global batch. Saving a
checkpoint is a collective operation, so every worker saves, but only the chief saves into the
model directory; the others save into a scratch directory that is deleted right after (the
pattern TensorFlow documents for this strategy). TPU pod slices need none of this: they go
through `TPUStrategy` with the same command started on every host (`--worker=all`).
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import Iterator, NamedTuple

from foundation.errors import UserError

TASK_TYPES = ("chief", "worker")


class WorkerInfo(NamedTuple):
    """This process's place in the cluster described by `TF_CONFIG`."""

    task_type: str
    task_index: int
    num_workers: int  # chief included
    has_chief: bool

    @property
    def is_chief(self) -> bool:
        """The chief, or worker 0 when the cluster names no chief (TensorFlow's rule)."""
        return self.task_type == "chief" or (self.task_index == 0 and not self.has_chief)


def worker_info(resolver=None) -> WorkerInfo | None:
    """This process's place in the cluster `TF_CONFIG` names, read by TensorFlow's own
    `TFConfigClusterResolver` (or `resolver`); None when unset or a single worker (one host)."""
    from foundation.quiet_tf import tf

    try:
        resolver = resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver()
        cluster = resolver.cluster_spec()
        task_type, task_index = resolver.task_type, resolver.task_id
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"TF_CONFIG is not valid JSON with 'cluster' and 'task' {{'type', 'index'}}: {exc}") from exc
    jobs = cluster.jobs
    if not jobs:
        return None
    unknown = sorted(set(jobs) - set(TASK_TYPES))
    if unknown:
        raise UserError(f"TF_CONFIG cluster has task type(s) {unknown}; only {list(TASK_TYPES)} are used")
    if task_type is None or task_index is None:
        raise UserError("TF_CONFIG names no 'task' {'type', 'index'}: give each host its own place in the cluster")
    if task_type not in jobs:
        raise UserError(f"TF_CONFIG task type {task_type!r} is not in the cluster {sorted(jobs)}")
    if task_index not in cluster.task_indices(task_type):
        raise UserError(f"TF_CONFIG task index {task_index} is out of range for {cluster.num_tasks(task_type)} "
                        f"{task_type} address(es)")
    if "chief" in jobs and cluster.num_tasks("chief") > 1:
        raise UserError("TF_CONFIG cluster may name at most one chief")
    num_workers = sum(cluster.num_tasks(t) for t in TASK_TYPES if t in jobs)
    if num_workers < 2:
        return None
    return WorkerInfo(task_type, task_index, num_workers, "chief" in jobs)


def make_multiworker_strategy():
    """`MultiWorkerMirroredStrategy` for the cluster in `TF_CONFIG` (ring all-reduce, any device)."""
    from foundation.quiet_tf import tf

    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO))


@contextlib.contextmanager
def checkpoint_dir(model_dir: str, info: WorkerInfo | None) -> Iterator[str]:
    """Where this worker saves: `model_dir` for the chief (or a single host), else a scratch
    directory removed on exit. Every worker must take part in the save (it is collective)."""
    if info is None or info.is_chief:
        yield model_dir
        return
    scratch = tempfile.mkdtemp(prefix=f"electra-{info.task_type}{info.task_index}-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
