"""The pretraining record schema: one module that the writer, the reader and tests share.

Compatible with google-research ELECTRA: each `tf.train.Example` has int64 features
`input_ids`, `input_mask`, `segment_ids`, each exactly `max_seq_length` long, in files
named `pretrain_data.tfrecord-I-of-N`. A `manifest.json` beside the shards records how
they were built (see `Manifest`); data from the original tool has no manifest and is
read all the same.

Writing needs no TensorFlow: `encode_example` serialises the `tf.train.Example` proto by
hand (fields in `FEATURES` order, so the bytes are deterministic) and `write_shard` frames
it as TFRecord (length, masked CRC-32C, data, masked CRC-32C). Reading (`parse_example`,
`check_record_dir`, `load_examples`) uses TensorFlow's own parser, so what the trainer sees
is exactly what TF makes of the bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
from typing import Any, Iterable, Iterator, Sequence

from foundation import fileio
from foundation.errors import UserError

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
    cut_tokens: int = 0  # tokens of lines longer than an example that packing dropped (the original's trim)

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


# ---- writing: hand-made proto bytes and TFRecord framing --------------------------------

_CRC_MASK_DELTA = 0xA282EAD8


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_VARINTS = tuple(_varint(i) for i in range(1 << 16))  # ids of any usual vocab: a lookup, not a loop


def _packed_varints(values: Sequence[int]) -> bytes:
    if min(values, default=0) < 0:
        raise ValueError("token ids must be >= 0")
    if max(values, default=0) < 0x80:  # masks, segment ids: one byte each, the value itself
        return bytes(values)
    try:
        return b"".join(map(_VARINTS.__getitem__, values))
    except IndexError:  # an id >= 65536
        return b"".join(map(_varint, values))


def _len_field(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    return bytes((tag,)) + (_VARINTS[n] if n < len(_VARINTS) else _varint(n)) + payload


def _int64_feature(key: str, values: Sequence[int]) -> bytes:
    int64_list = _len_field(0x0A, _packed_varints(values))  # Int64List.value, packed
    feature = _len_field(0x1A, int64_list)  # Feature.int64_list = 3
    entry = _len_field(0x0A, key.encode()) + _len_field(0x12, feature)  # map entry: key 1, value 2
    return _len_field(0x0A, entry)  # Features.feature = 1 (one map entry)


def encode_example(input_ids: Sequence[int], input_mask: Sequence[int], segment_ids: Sequence[int]) -> bytes:
    """A serialised `tf.train.Example` with the three int64 features (values >= 0)."""
    features = b"".join(
        _int64_feature(key, values) for key, values in zip(FEATURES, (input_ids, input_mask, segment_ids))
    )
    return _len_field(0x0A, features)  # Example.features = 1


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of data."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def write_shard(path: str, records: Iterable[bytes]) -> int:
    """Write serialised examples as one TFRecord file, atomically; returns the record count."""
    count = 0
    with fileio.atomic_write(path, "wb") as fh:
        for data in records:
            fh.write(frame_record(data))
            count += 1
    return count


def iter_records(path: str) -> Iterator[bytes]:
    """The records of a TFRecord file, CRCs checked; a damaged file raises `UserError`."""
    with fileio.open_read(path) as fh:
        index = 0
        while True:
            header = fh.read(12)
            if not header:
                return
            if len(header) < 12 or struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
                raise UserError(f"corrupt record {index} in {path}: bad length header")
            (length,) = struct.unpack("<Q", header[:8])
            data = fh.read(length)
            footer = fh.read(4)
            if len(data) < length or len(footer) < 4 or struct.unpack("<I", footer)[0] != _masked_crc(data):
                raise UserError(f"corrupt record {index} in {path}: truncated or bad checksum")
            yield data
            index += 1


# ---- reading: what the trainer and the tests share ---------------------------------------


def feature_spec(max_seq_length: int) -> dict:
    from foundation.quiet_tf import tf

    return {name: tf.io.FixedLenFeature([max_seq_length], tf.int64) for name in FEATURES}


def parse_example(serialized, max_seq_length: int) -> dict:
    """Parse one serialised example ([]) or a batch ([B]) into int32 tensors [L] / [B, L].

    int32 because TPUs do not take int64; the names are `FEATURES`. A record of another
    length fails inside TF, so call `check_record_dir` first for a clear message.
    """
    from foundation.quiet_tf import tf

    serialized = tf.convert_to_tensor(serialized, tf.string)
    spec = feature_spec(max_seq_length)
    if serialized.shape.rank == 0:
        parsed = tf.io.parse_single_example(serialized, spec)
    else:
        parsed = tf.io.parse_example(serialized, spec)
    return {name: tf.cast(parsed[name], tf.int32) for name in FEATURES}


def decode_example(data: bytes, source: str = "record") -> dict[str, list[int]]:
    """The three features of one serialised example as Python lists (for checks and tests)."""
    from foundation.quiet_tf import tf

    try:
        example = tf.train.Example.FromString(data)
        feats = example.features.feature
        return {name: list(feats[name].int64_list.value) for name in FEATURES if name in feats}
    except Exception as exc:  # protobuf's DecodeError
        raise UserError(f"corrupt record in {source}: {exc}") from exc


def _check_first_record(path: str, length: int | None, vocab_size: int | None) -> int | None:
    """Check the first record of a shard; returns its length (None for an empty shard)."""
    first = next(iter_records(path), None)
    if first is None:
        return length
    feats = decode_example(first, path)
    missing = [n for n in FEATURES if n not in feats]
    if missing:
        raise UserError(f"{path}: record 0 lacks feature(s) {' '.join(missing)}")
    lengths = {n: len(v) for n, v in feats.items()}
    got = lengths["input_ids"]
    if len(set(lengths.values())) != 1 or (length is not None and got != length):
        want = length if length is not None else got
        raise UserError(f"{path}: record 0 has feature lengths {lengths}, expected {want} (max_seq_length)")
    if vocab_size is not None and max(feats["input_ids"]) >= vocab_size:
        raise UserError(f"{path}: record 0 has token id {max(feats['input_ids'])} >= vocab size {vocab_size}")
    return got


def check_record_dir(
    directory: str,
    max_seq_length: int | None = None,
    vocab_file: str | None = None,
    vocab_size: int | None = None,
    full: bool = False,
) -> Manifest | None:
    """Check a record directory before training from it; returns its manifest (None for original data).

    Checks the manifest against the shards present, `max_seq_length`, the vocab file's
    hash and size, and the first record of every shard (all records with `full=True`,
    which also verifies every checksum). Any mismatch is a one-line `UserError`.
    """
    shards = list_shards(directory)
    counts = {int(_SHARD_RE.search(p).group(2)) for p in shards}  # type: ignore[union-attr]
    if len(counts) != 1 or len(shards) != counts.pop():
        raise UserError(f"{directory}: shard files are incomplete or from different runs ({len(shards)} files)")
    manifest = read_manifest(directory)
    if manifest is not None:
        if manifest.num_shards != len(shards):
            raise UserError(f"{directory}: manifest lists {manifest.num_shards} shards, found {len(shards)}")
        if max_seq_length is not None and manifest.max_seq_length != max_seq_length:
            raise UserError(
                f"{directory}: records have max_seq_length {manifest.max_seq_length}, expected {max_seq_length}"
            )
        if vocab_size is not None and manifest.vocab_size != vocab_size:
            raise UserError(f"{directory}: records were built with vocab size {manifest.vocab_size}, expected {vocab_size}")
        if vocab_file is not None and file_sha256(vocab_file) != manifest.vocab_sha256:
            raise UserError(f"{directory}: records were built with another vocab than {vocab_file} (sha256 differs)")
        max_seq_length = manifest.max_seq_length
        vocab_size = vocab_size or manifest.vocab_size
    for path in shards:
        max_seq_length = _check_first_record(path, max_seq_length, vocab_size)
        if full:
            for i, data in enumerate(iter_records(path)):
                lengths = {len(v) for v in decode_example(data, path).values()}
                if lengths != {max_seq_length}:
                    raise UserError(f"{path}: record {i} has feature lengths {lengths}, expected {max_seq_length}")
    return manifest


def load_examples(directory: str) -> dict[str, "numpy.ndarray"]:  # noqa: F821
    """All examples of a record directory as int64 arrays [num_examples, L], shard order (tests)."""
    import numpy as np

    rows: dict[str, list[list[int]]] = {name: [] for name in FEATURES}
    for path in list_shards(directory):
        for data in iter_records(path):
            for name, values in decode_example(data, path).items():
                rows[name].append(values)
    return {name: np.asarray(values, dtype=np.int64) for name, values in rows.items()}
