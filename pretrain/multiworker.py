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
import json
import os
import shutil
import tempfile
from typing import Iterator, Mapping, NamedTuple

from foundation.errors import UserError, quiet_tensorflow

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


def parse_tf_config(text: str | None) -> WorkerInfo | None:
    """The cluster of a `TF_CONFIG` value; None when unset or a single worker (one host)."""
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster: Mapping[str, list] = config["cluster"]
        task_type, task_index = config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"TF_CONFIG is not valid JSON with 'cluster' and 'task' {{'type', 'index'}}: {exc}") from exc
    unknown = sorted(set(cluster) - set(TASK_TYPES))
    if unknown:
        raise UserError(f"TF_CONFIG cluster has task type(s) {unknown}; only {list(TASK_TYPES)} are used")
    if task_type not in cluster:
        raise UserError(f"TF_CONFIG task type {task_type!r} is not in the cluster {sorted(cluster)}")
    if not 0 <= task_index < len(cluster[task_type]):
        raise UserError(f"TF_CONFIG task index {task_index} is out of range for {len(cluster[task_type])} "
                        f"{task_type} address(es)")
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG cluster may name at most one chief")
    num_workers = sum(len(cluster.get(t, [])) for t in TASK_TYPES)
    if num_workers < 2:
        return None
    return WorkerInfo(task_type, task_index, num_workers, "chief" in cluster)


def worker_info() -> WorkerInfo | None:
    """This process's `WorkerInfo` from the environment, None when training on one host."""
    return parse_tf_config(os.environ.get("TF_CONFIG"))


def make_multiworker_strategy():
    """`MultiWorkerMirroredStrategy` for the cluster in `TF_CONFIG` (ring all-reduce, any device)."""
    quiet_tensorflow()
    import tensorflow as tf

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
