"""`electra-clean`: raw text files in, cleaned sharded text and a statistics JSON out.

    electra-clean [--preset default|kcelectra] INPUT... OUT_DIR
    electra-clean --preset kcelectra --keep-all IN OUT      (`-` = stdin/stdout)

Input files (`.txt`, `.gz`, local or `gs://`; directories are searched) hold one sentence
or comment per line and a blank line between documents. The files are read in blocks of
whole lines; worker processes clean a block and apply the per-line filters; the main
process receives the blocks in input order, drops duplicates and short documents and
deals the documents round-robin to the shards. So memory stays flat (bar the 8-byte
dedupe key per distinct line) and the output does not depend on `--num-processes`.

Reading and cleaning a block is `clean_worker`, the rules `normalize` and `filters`; this
module is the two modes, resume and the command line.

`--keep-all` is the unix-filter mode: only the per-line normalisation, one output line
for each input line, in order. That is how parity with KcELECTRA's `clean()` is checked.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import time
from typing import IO, Any

from data_prep.clean_worker import STDIO, Mark, clean_chunk, ordered_map, read_chunks
from data_prep.filters import (
    STATS_FILE, CleanStats, FilterConfig, add_filter_flags, document_too_short, filters_from_flags,
)
from data_prep.normalize import PRESETS
from foundation import console, fileio
from foundation.errors import UserError, run_cli
from foundation.stage_output import StageOutput, check_outputs_apart, input_fingerprint

_SHARD_RE = re.compile(r"cleaned-\d{5}-of-\d{5}\.txt$")


def shard_name(index: int, num_shards: int) -> str:
    return f"cleaned-{index:05d}-of-{num_shards:05d}.txt"


@dataclasses.dataclass(frozen=True)
class CleanConfig:
    """Everything one cleaning run depends on; validated here, unknown keys rejected."""

    inputs: tuple[str, ...]
    output: str  # a directory; with keep_all, a file or `-`
    preset: str = "default"
    keep_all: bool = False
    filters: FilterConfig = FilterConfig()
    num_shards: int = 1
    num_processes: int = 1
    chunk_bytes: int = 1 << 20  # a worker's block of whole lines
    stats_file: str | None = None  # default OUT_DIR/clean_stats.json; none in keep-all mode
    overwrite: bool = False  # redo even when OUT_DIR already holds this exact run

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UserError("no input given")
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        for name in ("num_shards", "num_processes", "chunk_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.keep_all:
            if len(self.inputs) != 1:
                raise UserError(f"--keep-all takes one input file (or -), got {len(self.inputs)}")
            if self.num_shards != 1:
                raise UserError("--keep-all writes one output; --num-shards does not apply")
        elif self.output == STDIO:
            raise UserError("output '-' (stdout) needs --keep-all; otherwise give an output directory")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "CleanConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        filter_keys = {f.name for f in dataclasses.fields(FilterConfig)}
        for key in d:
            if key not in known and key not in filter_keys:
                raise UserError(f"unknown key '{key}' in {source}")
        filters = FilterConfig(**{k: v for k, v in d.items() if k in filter_keys})
        rest = {k: v for k, v in d.items() if k in known}
        rest["inputs"] = tuple(rest.get("inputs", ()))
        return cls(**{**rest, "filters": filters})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(d.pop("filters"))
        d["inputs"] = list(self.inputs)
        return d


# --- the two modes -----------------------------------------------------------------------
def _progress(unit: str):
    return console.progress(desc="clean", unit=unit, unit_scale=True)


def run_keep_all(config: CleanConfig) -> CleanStats:
    """One cleaned line per input line, in order; no filters."""
    path = config.inputs[0]
    jobs = ((chunk, config.preset, config.filters, True) for chunk in read_chunks(path, config.chunk_bytes))
    stats = CleanStats(files=1)
    sink = contextlib.nullcontext(sys.stdout.buffer) if config.output == STDIO else fileio.atomic_write(config.output)
    with sink as out, _progress("line") as bar:
        for result in ordered_map(clean_chunk, jobs, config.num_processes):
            out.write(result.output)
            stats.merge(result.stats)
            bar.update(result.stats.lines_in)
        out.flush()
    return stats


class _ShardWriter:
    """Deals documents round-robin to the shard files; a blank line between documents."""

    def __init__(self, files: list[IO[bytes]]):
        self.files = files
        self.documents = 0

    def write(self, lines: list[str]) -> None:
        fh = self.files[self.documents % len(self.files)]
        if self.documents >= len(self.files):
            fh.write(b"\n")
        fh.write(("\n".join(lines) + "\n").encode("utf-8"))
        self.documents += 1


def run_filtered(config: CleanConfig, files: list[str], shard_paths: list[str]) -> CleanStats:
    """Clean, filter and dedupe all `files` into the `config.num_shards` shards."""
    filters = config.filters
    stats = CleanStats(files=len(files))
    seen: set[bytes] = set()
    jobs = (
        (chunk, config.preset, filters, False) for path in files for chunk in read_chunks(path, config.chunk_bytes)
    )
    with contextlib.ExitStack() as stack, _progress("line") as bar:
        writer = _ShardWriter([stack.enter_context(fileio.atomic_write(p)) for p in shard_paths])
        doc: list[str] = []
        in_document = False

        def end_document() -> None:
            nonlocal doc, in_document
            if in_document:
                stats.documents_in += 1
                if document_too_short(len(doc), filters):
                    stats.documents_dropped += 1
                    stats.drop("short_document", len(doc))
                else:
                    writer.write(doc)
                    stats.documents_out += 1
                    stats.lines_out += len(doc)
                    stats.chars_out += sum(map(len, doc))
            doc, in_document = [], False

        for result in ordered_map(clean_chunk, jobs, config.num_processes):
            if result.first_line == 1:  # a new file: documents never span files
                end_document()
            stats.merge(result.stats)
            bar.update(result.stats.lines_in)
            for item in result.items:
                if item is Mark.BREAK:
                    end_document()
                    continue
                in_document = True
                if item is Mark.DROPPED:
                    continue
                line, key = item
                if filters.dedupe:
                    if key in seen:
                        stats.drop("duplicate")
                        continue
                    seen.add(key)
                doc.append(line)
        end_document()
        if stats.lines_in == 0:
            raise UserError(f"empty corpus: no text lines in {', '.join(config.inputs)}")
    return stats


def _remove_stale_shards(directory: str, keep: list[str]) -> None:
    """Shards of an earlier run with another `--num-shards` would be read as part of this one."""
    if fileio.is_gcs(directory):
        return
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if _SHARD_RE.match(name) and path not in keep:
            os.remove(path)


def _check_stdio_apart(source: str, output: str) -> None:
    """`- OUT < OUT` would replace the file being read, `IN - >> IN` read its own output forever."""
    def same(fd: int, path: str) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            return False

    if source == STDIO and output != STDIO and same(0, output):
        raise UserError(f"output {output} is the input (stdin reads it): writing it would replace the input; "
                        "choose another output")
    if output == STDIO and source != STDIO and same(1, source):
        raise UserError(f"output (stdout) is the input {source}: it would read its own output; "
                        "choose another output")


# Settings that change how the work is split, not what comes out.
_NOT_IN_OUTPUT = ("num_processes", "chunk_bytes", "overwrite", "stats_file")


def run(config: CleanConfig) -> CleanStats:
    """Run one cleaning job and write its statistics; returns them. A rerun with the same
    inputs and settings finds the finished output and does nothing (`overwrite` to redo)."""
    start = time.perf_counter()
    fingerprint = None
    if config.keep_all:
        if config.inputs[0] != STDIO and fileio.list_text_files(config.inputs[0]) != [config.inputs[0]]:
            raise UserError(f"--keep-all takes one file, not a directory: {config.inputs[0]}")
        check_outputs_apart([p for p in (config.output, config.stats_file) if p and p != STDIO],
                            [p for p in config.inputs if p != STDIO])
        _check_stdio_apart(config.inputs[0], config.output)
        stats = run_keep_all(config)
        stats_file = config.stats_file
        if stats_file:
            fileio.write_text(stats_file, stats.to_json(config=config.to_dict(), inputs=None,
                                                        seconds=round(time.perf_counter() - start, 3)))
    else:
        files = [f for path in config.inputs for f in ([STDIO] if path == STDIO else fileio.list_text_files(path))]
        stats_file = config.stats_file or fileio.join(config.output, STATS_FILE)
        shards = [fileio.join(config.output, shard_name(i, config.num_shards)) for i in range(config.num_shards)]
        out = StageOutput(config.output, tuple(p for p in config.inputs if p != STDIO), stats_file, tuple(shards))
        if STDIO not in files:
            fingerprint = input_fingerprint(files)
            settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_OUTPUT}
            finished = None if config.overwrite else out.finished(config=settings, inputs=fingerprint)
            if finished:
                print(f"electra-clean: {config.output} is up to date (same inputs and settings); "
                      "--overwrite to redo", file=sys.stderr)
                return CleanStats.from_dict(finished)
        with out.writing():
            stats = run_filtered(config, files, shards)
            _remove_stale_shards(config.output, shards)
            fileio.write_text(stats_file, stats.to_json(config=config.to_dict(), inputs=fingerprint,
                                                        seconds=round(time.perf_counter() - start, 3)))
    seconds = time.perf_counter() - start
    for location in stats.non_utf8_locations[:10]:
        print(f"warning: not UTF-8: {location}", file=sys.stderr)
    if stats.dropped.get("too_long"):
        print(f"warning: dropped {stats.dropped['too_long']:,} line(s) longer than {fileio.MAX_LINE_BYTES:,} bytes "
              "(too_long in the statistics)", file=sys.stderr)
    rate = stats.lines_in / seconds if seconds else 0.0
    where = config.output if config.output != STDIO else "stdout"
    print(
        f"electra-clean [{config.preset}{', keep-all' if config.keep_all else ''}]: {stats.summary()}; "
        f"wrote {where} in {seconds:.1f} s ({rate:,.0f} lines/s)"
        + (f"; statistics {stats_file}" if stats_file else ""),
        file=sys.stderr,
    )
    return stats


def parse_args(argv: list[str] | None = None) -> CleanConfig:
    p = console.parser(
        prog="electra-clean",
        description="Normalise and filter raw text (one sentence a line, blank line between documents).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="INPUT... OUTPUT: text files/directories, then the output directory (with --keep-all: IN OUT, - for stdin/stdout)")
    p.add_argument("--preset", choices=PRESETS, default="default", help="kcelectra: byte-identical to KcELECTRA's clean(); default: keeps emoji, NFC")
    p.add_argument("--keep-all", action="store_true", help="normalise only: one output line per input line, no filters")
    add_filter_flags(p)
    p.add_argument("--num-shards", type=int, default=1, help="output files; documents are dealt round-robin")
    p.add_argument("--num-processes", type=int, default=1, help="worker processes (output is the same for any number)")
    p.add_argument("--chunk-bytes", type=int, default=1 << 20, help="bytes of whole lines per work unit")
    p.add_argument("--overwrite", action="store_true", help="redo even if OUT_DIR holds the same finished run")
    p.add_argument("--stats-file", default=None, help="statistics JSON (default OUTPUT/clean_stats.json; keep-all: none)")
    a = p.parse_args(argv)
    if len(a.paths) < 2:
        p.error("give at least one input and an output")
    return CleanConfig(
        inputs=tuple(a.paths[:-1]),
        output=a.paths[-1],
        preset=a.preset,
        keep_all=a.keep_all,
        filters=filters_from_flags(a),
        num_shards=a.num_shards,
        num_processes=a.num_processes,
        chunk_bytes=a.chunk_bytes,
        stats_file=a.stats_file,
        overwrite=a.overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        run(config)
    except BrokenPipeError:  # `electra-clean --keep-all IN - | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cli() -> None:
    run_cli(main)
