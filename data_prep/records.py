"""The pretraining record schema: one module that the writer, the reader and tests share.

Compatible with google-research ELECTRA: each `tf.train.Example` has int64 features
`input_ids`, `input_mask`, `segment_ids`, each exactly `max_seq_length` long, in files
named `pretrain_data.tfrecord-I-of-N`. A `manifest.json` beside the shards records how
they were built (see `Manifest`); data from the original tool has no manifest and is
read all the same.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from data_prep import fileio
from data_prep.errors import UserError

FEATURES = ("input_ids", "input_mask", "segment_ids")
SHARD_PREFIX = "pretrain_data.tfrecord"
MANIFEST = "manifest.json"
_SHARD_RE = re.compile(re.escape(SHARD_PREFIX) + r"-(\d+)-of-(\d+)$")


def shard_name(index: int, num_shards: int) -> str:
    return f"{SHARD_PREFIX}-{index}-of-{num_shards}"


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with fileio.open_read(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a record directory holds and how it was built."""

    max_seq_length: int
    vocab_size: int
    vocab_sha256: str
    num_shards: int
    examples_per_shard: tuple[int, ...]
    num_tokens: int  # real (non-padding) tokens, [CLS]/[SEP] included
    seed: int
    flags: dict[str, Any]

    @property
    def num_examples(self) -> int:
        return sum(self.examples_per_shard)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["num_examples"] = self.num_examples
        return json.dumps(d, indent=2, ensure_ascii=False, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST) -> "Manifest":
        try:
            d = json.loads(text)
            d.pop("num_examples", None)
            d["examples_per_shard"] = tuple(d["examples_per_shard"])
            return cls(**d)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"corrupt manifest {source}: {exc}") from exc


def write_manifest(directory: str, manifest: Manifest) -> None:
    fileio.write_text(fileio.join(directory, MANIFEST), manifest.to_json())


def read_manifest(directory: str) -> Manifest | None:
    """The directory's manifest, or None for data written by the original tool."""
    path = fileio.join(directory, MANIFEST)
    if not fileio.exists(path):
        return None
    return Manifest.from_json(fileio.read_text(path), path)


def list_shards(directory: str) -> list[str]:
    """All `pretrain_data.tfrecord-I-of-N` files in a directory, in shard order."""
    if not fileio.exists(directory):
        raise UserError(f"record directory not found: {directory}")
    paths = [p for p in fileio.glob(fileio.join(directory, SHARD_PREFIX + "-*")) if _SHARD_RE.search(p)]
    if not paths:
        raise UserError(f"no {SHARD_PREFIX}-I-of-N files in {directory}")
    return sorted(paths, key=lambda p: int(_SHARD_RE.search(p).group(1)))  # type: ignore[union-attr]
