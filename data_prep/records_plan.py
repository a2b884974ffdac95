"""`electra-build-data`'s plan: its settings, the input files, which byte range of which file
goes to which shard, and reading a range back as documents. Pure but for reading the inputs.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any, Iterator, NamedTuple, Sequence

from data_prep import tokenization
from data_prep.packing import MIN_SEQ_LENGTH
from foundation import fileio
from foundation.errors import UserError

TEXT_BYTES_PER_SHARD = 64 << 20
MAX_AUTO_SHARDS = 1000
GZIP_RATIO = 3  # text bytes per compressed byte, to weigh .gz files when planning


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that decides a build; validated here, in one place."""

    corpus_dir: str
    vocab_file: str
    output_dir: str
    max_seq_length: int = 128
    num_processes: int = 1
    blanks_separate_docs: bool = True
    do_lower_case: bool | None = None  # None: vocab_settings.json beside the vocab, else cased
    strip_accents: bool | None = None  # None: vocab_settings.json, else no stripping
    max_input_chars_per_word: int | None = None  # None: vocab_settings.json, else 100
    num_shards: int = 0  # 0: from the data size
    seed: int = 0
    tokenizer: str = "tokenizers"
    files_per_process: int = 0  # shards a worker process writes before it is replaced; 0: no limit
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.max_seq_length < MIN_SEQ_LENGTH:
            raise UserError(f"--max-seq-length must be >= {MIN_SEQ_LENGTH}, got {self.max_seq_length}")
        if self.num_processes < 1:
            raise UserError(f"--num-processes must be >= 1, got {self.num_processes}")
        for name in ("num_shards", "files_per_process", "seed"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.tokenizer not in tokenization.BACKENDS:
            raise UserError(f"--tokenizer must be one of {', '.join(tokenization.BACKENDS)}, got {self.tokenizer!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BuildConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown build setting(s): {', '.join(unknown)}")
        return cls(**d)


# ---- planning: which bytes of which file go to which shard ---------------------------------


class InputFile(NamedTuple):
    path: str
    size: int  # bytes on disk
    splittable: bool  # plain text can be cut at any byte; .gz only as a whole

    @property
    def weight(self) -> int:
        return self.size if self.splittable else self.size * GZIP_RATIO


class Span(NamedTuple):
    """Bytes [start, end) of a file (end None: to its end); documents starting there belong to it."""

    path: str
    start: int
    end: int | None


def list_inputs(corpus: str) -> list[InputFile]:
    files = [InputFile(p, fileio.size(p), not p.endswith(".gz")) for p in fileio.list_text_files(corpus)]
    if not any(f.size for f in files):
        raise UserError(f"empty corpus: no text in {corpus}")
    return files


def auto_num_shards(text_bytes: int, num_processes: int) -> int:
    """One shard per 64 MiB of text, at least one per process, at most 1,000."""
    return max(num_processes, min(MAX_AUTO_SHARDS, math.ceil(text_bytes / TEXT_BYTES_PER_SHARD)))


def plan_shards(files: Sequence[InputFile], num_shards: int, cut_files: bool = True) -> list[list[Span]]:
    """Cut the concatenated inputs into `num_shards` contiguous ranges of about equal weight.

    Plain files are cut at the range boundaries; a `.gz` file goes whole to the range that
    holds its middle, and so does every file without `cut_files` (when a file is one
    document, a cut would make it two). Pure: the plan depends only on the file list, the
    shard count and `cut_files`.
    """
    total = sum(f.weight for f in files)
    bounds = [k * total // num_shards for k in range(num_shards + 1)]
    plan: list[list[Span]] = [[] for _ in range(num_shards)]
    offset = 0
    for f in files:
        if not f.size:
            continue
        lo, hi = offset, offset + f.weight
        offset = hi
        if not (f.splittable and cut_files):
            middle = (lo + hi) // 2
            plan[max(k for k in range(num_shards) if bounds[k] <= middle)].append(Span(f.path, 0, None))
            continue
        for k in range(num_shards):
            a, b = max(lo, bounds[k]), min(hi, bounds[k + 1])
            if a < b:
                plan[k].append(Span(f.path, a - lo, None if b == hi else b - lo))
    return plan


# ---- reading: lines of a span, grouped into documents ---------------------------------------


def line_number(path: str, offset: int) -> int:
    """The 1-based number of the line starting at byte `offset` (of the decompressed text)."""
    newlines = 0
    with fileio.open_read(path) as fh:
        while offset > 0:
            block = fh.read(min(offset, 1 << 20))
            if not block:
                break
            newlines += block.count(b"\n")
            offset -= len(block)
    return newlines + 1


def _decode(raw: bytes, path: str, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}:{line_number(path, offset)}: not UTF-8 text ({exc.reason}); "
                        "run electra-clean first") from exc


def _read_line(fh, path: str, offset: int) -> bytes:
    return fileio.read_line(fh, lambda: f"{path}:{line_number(path, offset)}")


def read_span(span: Span, blanks_separate_docs: bool) -> Iterator[tuple[int, bytes, str]]:
    """(document number, document's first line, stripped line) for each non-blank line of a span.

    A range owns the documents that start inside it: a cut at byte `e` moves to the end of
    the first blank line that starts at or after `e`, the same point for the ranges on both
    sides of it. A range whose start and end move to the same point (it lies inside one
    document) owns nothing, so a document longer than a range is read exactly once. Without
    `blanks_separate_docs` a cut falls at the first line start at or after `e`, and each
    range is one document.
    """
    with fileio.open_read(span.path) as fh:
        pos = 0
        try:
            if span.start:
                fh.seek(span.start - 1)
                if fh.read(1) != b"\n":  # skip the rest of a line that began before the range
                    while (piece := fh.readline(fileio.MAX_LINE_BYTES)) and not piece.endswith(b"\n"):
                        pass
                pos = fh.tell()
                while blanks_separate_docs:
                    raw = _read_line(fh, span.path, pos)
                    pos += len(raw)
                    if not raw:
                        return  # no blank line after the start: the document began in an earlier range
                    if not _decode(raw, span.path, pos - len(raw)).strip():
                        if span.end is not None and pos - len(raw) >= span.end:
                            return  # the blank line ends a later range too: no document starts in this one
                        break
            doc, first, in_doc = 0, b"", False
            while raw := _read_line(fh, span.path, pos):
                line_start = pos
                pos += len(raw)
                text = _decode(raw, span.path, line_start).strip()
                if span.end is not None and line_start >= span.end and (not text or not blanks_separate_docs):
                    break
                if not text:
                    if blanks_separate_docs and in_doc:
                        doc, in_doc = doc + 1, False
                    continue
                if not in_doc:
                    first, in_doc = raw, True
                yield doc, first, text
        except (OSError, EOFError, zlib.error) as exc:  # gzip raises all three
            raise UserError(f"unreadable file {span.path}: {exc}") from exc
