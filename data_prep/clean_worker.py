"""`electra-clean`'s worker: input files read in blocks of whole lines, one block cleaned and
filtered line by line into typed items (`Kept` or a `Mark`), and the ordered process pool.

The command (`clean`) and the Beam pipeline (`beam_clean`) both run `clean_chunk` on `read_chunks`.
"""
from __future__ import annotations

import contextlib
import enum
import multiprocessing
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import IO, Callable, Collection, Iterable, Iterator, NamedTuple, TypeVar

from data_prep.filters import CleanStats, FilterConfig, dedupe_key, is_document_break, line_drop_reason
from data_prep.normalize import clean_lines, clean_text
from foundation import fileio
from foundation.errors import UserError

STDIO = "-"


class Chunk(NamedTuple):
    """A block of whole lines of one file; `first_line` is the 1-based number of its first."""

    path: str
    first_line: int
    data: bytes


def _open_input(path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    return contextlib.nullcontext(sys.stdin.buffer) if path == STDIO else fileio.open_read(path)


def read_chunks(path: str, chunk_bytes: int) -> Iterator[Chunk]:
    """Blocks of about `chunk_bytes` ending at a `\\n` (a bare `\\r` stays inside its line).

    A line longer than `fileio.MAX_LINE_BYTES` is cut to its first `MAX_LINE_BYTES + 1` bytes
    and the rest skipped unread into memory (a 50 MB line without a newline costs 1 MiB);
    `clean_chunk` then drops it as `too_long`.
    """
    line = 1
    carry = b""
    skipping = False  # inside a line already cut to the limit
    with _open_input(path) as fh:
        while True:
            try:
                block = fh.read(chunk_bytes)
            except Exception as exc:  # gzip/zlib/EOF errors, tf.errors for gs://
                raise UserError(f"unreadable file {path}: {exc}") from exc
            if not block:
                break
            if skipping:
                end = block.find(b"\n")
                if end < 0:
                    continue
                block, skipping = block[end:], False
            block = carry + block
            cut = block.rfind(b"\n") + 1
            data, carry = block[:cut], block[cut:]
            if data:
                yield Chunk(path, line, data)
                line += data.count(b"\n")
            if len(carry) > fileio.MAX_LINE_BYTES:
                carry, skipping = carry[: fileio.MAX_LINE_BYTES + 1], True
    if carry:
        yield Chunk(path, line, carry)


def too_long_lines(data: bytes) -> set[int]:
    """Indices of the lines of a block longer than `fileio.MAX_LINE_BYTES` (newline not counted)."""
    if len(data) <= fileio.MAX_LINE_BYTES:
        return set()
    return {i for i, raw in enumerate(data.split(b"\n")) if len(raw) > fileio.MAX_LINE_BYTES}


def decode_lines(chunk: Chunk, stats: CleanStats, too_long: Collection[int] = ()) -> tuple[list[str], set[int]]:
    """The chunk's lines, and the indices of lines that were not UTF-8 (noted in `stats`
    unless `too_long`: those were cut, maybe inside a character).

    Bad bytes decode to U+FFFD so that nothing crashes; the caller decides whether such
    a line is dropped.
    """
    data = chunk.data[:-1] if chunk.data.endswith(b"\n") else chunk.data
    try:
        return data.decode("utf-8").split("\n"), set()
    except UnicodeDecodeError:
        pass
    lines, bad = [], set()
    for i, raw in enumerate(data.split(b"\n")):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("utf-8", "replace"))
            if i not in too_long:
                bad.add(i)
                stats.note_non_utf8(chunk.path, chunk.first_line + i)
    return lines, bad


class Mark(enum.Enum):
    """An item that is not a kept line."""

    BREAK = "end of a document"
    DROPPED = "a line of the current document that a filter removed"


class Kept(NamedTuple):
    line: str  # cleaned
    key: bytes  # dedupe key (empty without dedupe)


class ChunkResult(NamedTuple):
    """`items`: per input line a `Mark` or a `Kept` line; or, in keep-all mode, `output`
    holds the cleaned block as UTF-8."""

    path: str
    first_line: int
    stats: CleanStats
    items: list[Mark | Kept]
    output: bytes


def clean_chunk(job: tuple[Chunk, str, FilterConfig, bool]) -> ChunkResult:
    chunk, preset, filters, keep_all = job
    stats = CleanStats()
    too_long = too_long_lines(chunk.data)
    lines, bad = decode_lines(chunk, stats, too_long)
    if keep_all:
        if too_long:  # one output line per input line: it cannot be dropped
            raise fileio.line_too_long(f"{chunk.path}:{chunk.first_line + min(too_long)}")
        text = clean_text("\n".join(lines), preset)
        stats.lines_in = stats.lines_out = len(lines)
        stats.chars_in = sum(map(len, lines))
        stats.chars_out = len(text) - len(lines) + 1
        return ChunkResult(chunk.path, chunk.first_line, stats, [], text.encode("utf-8") + b"\n")
    items: list[Mark | Kept] = []
    for i, (raw, cleaned) in enumerate(zip(lines, clean_lines(lines, preset))):
        if is_document_break(raw):
            items.append(Mark.BREAK)
            continue
        stats.lines_in += 1
        if i in too_long:  # counted, its characters (never all read) not
            stats.drop("too_long")
            items.append(Mark.DROPPED)
            continue
        stats.chars_in += len(raw)
        reason = "non_utf8" if i in bad and filters.drop_non_utf8 else line_drop_reason(cleaned, filters)
        if reason:
            stats.drop(reason)
            items.append(Mark.DROPPED)
        else:
            items.append(Kept(cleaned, dedupe_key(cleaned) if filters.dedupe else b""))
    return ChunkResult(chunk.path, chunk.first_line, stats, items, b"")


T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], jobs: Iterable[T], processes: int) -> Iterator[R]:
    """`map(fn, jobs)` over worker processes, results in job order, at most 2 per worker
    in flight (so reading never runs ahead of the workers: memory stays flat)."""
    if processes == 1:
        yield from map(fn, jobs)
        return
    # fork starts in milliseconds; after TensorFlow (gs:// inputs) it is not safe.
    context = multiprocessing.get_context("spawn" if "tensorflow" in sys.modules else "fork")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= 2 * processes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
