"""Stage: cleaned text + WordPiece vocab -> sharded pretraining TFRecords + manifest.

Accepts the flags of google-research ELECTRA's `build_pretraining_dataset.py` and writes
its format (see `records`), packed by its rules (see `packing`). What differs:

- Shards: `--num-shards` (default: one per 64 MiB of text, at least one per process, at
  most 1,000) instead of always 1,000. The corpus is cut into that many contiguous byte
  ranges (whole files for `.gz`), each range aligned to document starts, and each shard is
  built from one range by one task.
- Deterministic: the same inputs, settings, `--seed` and shard count give byte-identical
  shards, whatever `--num-processes` is. The process count only matters through the
  default shard count; pass `--num-shards` to make it irrelevant.
- Atomic and resumable: a shard is written under a temporary name and renamed; a rerun
  after a crash or `kill -9` keeps finished shards and builds the rest; `manifest.json` is
  written last. Progress of a build lives in `_build/` until the manifest is written; a
  failed run that finished no shard leaves nothing (`foundation.stage_output`).
- Streaming: memory holds one batch of lines and one example per process.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
import zlib
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from foundation import fileio
from data_prep import packing, records, tokenization, vocab_files
from foundation.errors import UserError, run_cli
from foundation.stage_output import StageOutput

TEXT_BYTES_PER_SHARD = 64 << 20
MAX_AUTO_SHARDS = 1000
GZIP_RATIO = 3  # text bytes per compressed byte, to weigh .gz files when planning
BATCH_LINES = 2048
STATE_DIR = "_build"
MIN_SEQ_LENGTH = 8


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


def plan_shards(files: Sequence[InputFile], num_shards: int) -> list[list[Span]]:
    """Cut the concatenated inputs into `num_shards` contiguous ranges of about equal weight.

    Plain files are cut at the range boundaries; a `.gz` file goes whole to the range that
    holds its middle. Pure: the plan depends only on the file list and the shard count.
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
        if not f.splittable:
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


def read_span(span: Span, blanks_separate_docs: bool) -> Iterator[tuple[int, bytes, str]]:
    """(document number, document's first line, stripped line) for each non-blank line of a span.

    Splitting rule, the same on both sides of a cut at byte `e`: the range before the cut
    reads on past `e` up to and including the first blank line that starts at or after `e`;
    the range after it skips exactly those lines. Without `blanks_separate_docs` a cut
    falls at the first line start at or after `e`, and each range is one document.
    """
    with fileio.open_read(span.path) as fh:
        pos = 0
        try:
            if span.start:
                fh.seek(span.start - 1)
                if fh.read(1) != b"\n":
                    fh.readline()
                pos = fh.tell()
                while blanks_separate_docs:
                    raw = fh.readline()
                    pos += len(raw)
                    if not raw or not _decode(raw, span.path, pos - len(raw)).strip():
                        break
            doc, first, in_doc = 0, b"", False
            for raw in iter(fh.readline, b""):
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


# ---- one shard: read, tokenise, pack, write -------------------------------------------------


class ShardTask(NamedTuple):
    index: int
    num_shards: int
    spans: tuple[Span, ...]


class ShardResult(NamedTuple):
    index: int
    examples: int
    tokens: int


class ShardBuilder:
    """What a worker needs, loaded once per process: the tokenizer and the settings."""

    def __init__(self, cfg: BuildConfig, settings: vocab_files.VocabSettings):
        self.cfg = cfg
        self.tokenizer = tokenization.load_tokenizer(cfg.vocab_file, settings, cfg.tokenizer)

    def _sentences(self, spans: Iterable[Span]) -> Iterator[tuple[tuple[int, int], bytes, list[int]]]:
        """((span, document), document's first line, ids) per line, tokenised in batches."""
        lines = (
            ((i, doc), first, text)
            for i, span in enumerate(spans)
            for doc, first, text in read_span(span, self.cfg.blanks_separate_docs)
        )
        while batch := list(itertools.islice(lines, BATCH_LINES)):
            ids = self.tokenizer.encode_batch([text for _, _, text in batch])
            yield from ((key, first, sentence) for (key, first, _), sentence in zip(batch, ids))

    def build(self, task: ShardTask) -> ShardResult:
        cfg, tok = self.cfg, self.tokenizer
        tokens = 0

        def serialized() -> Iterator[bytes]:
            nonlocal tokens
            for (_, first), group in itertools.groupby(self._sentences(task.spans), key=lambda s: s[:2]):
                for features, n in packing.document_features(
                    (ids for *_, ids in group), first, cfg.max_seq_length, cfg.seed, tok.cls_id, tok.sep_id, tok.pad_id
                ):
                    tokens += n
                    yield records.encode_example(*features)

        path = fileio.join(cfg.output_dir, records.shard_name(task.index, task.num_shards))
        count = records.write_shard(path, serialized())
        result = ShardResult(task.index, count, tokens)
        fileio.write_text(_stats_path(cfg.output_dir, task.index, task.num_shards), _json(result._asdict()))
        return result


_WORKER: ShardBuilder | None = None


def _init_worker(cfg: BuildConfig, settings: vocab_files.VocabSettings) -> None:
    global _WORKER
    _WORKER = ShardBuilder(cfg, settings)


def _build_in_worker(task: ShardTask) -> ShardResult:
    assert _WORKER is not None
    return _WORKER.build(task)


# ---- the output directory: identity, resume, manifest ---------------------------------------


def _json(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _stats_path(output_dir: str, index: int, num_shards: int) -> str:
    return fileio.join(output_dir, STATE_DIR, f"shard-{index}-of-{num_shards}.json")


def build_identity(
    cfg: BuildConfig, settings: vocab_files.VocabSettings, vocab_sha: str, files: Sequence[InputFile], num_shards: int
) -> dict[str, Any]:
    """Everything the shard bytes depend on; a rerun resumes only if this is unchanged."""
    return {
        "corpus_dir": cfg.corpus_dir,
        "inputs": [[f.path, f.size] for f in files],
        "vocab_file": cfg.vocab_file,
        "vocab_sha256": vocab_sha,
        "max_seq_length": cfg.max_seq_length,
        "blanks_separate_docs": cfg.blanks_separate_docs,
        "settings": dataclasses.asdict(settings),
        "tokenizer": cfg.tokenizer,
        "num_shards": num_shards,
        "seed": cfg.seed,
    }


def _first_difference(old: dict, new: dict) -> str:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
    return "none"


def prepare_output_dir(cfg: BuildConfig, identity: dict[str, Any]) -> None:
    """Make the (existing) output directory ready to build or resume the build `identity`.

    Refuses (unless --overwrite) a directory holding shards or a manifest of another run, or
    a partial build from other settings that finished a shard. A partial build that finished
    no shard is started afresh: it holds no work worth keeping.
    """
    out = cfg.output_dir
    config_path = _config_path(out)
    shards = fileio.glob(fileio.join(out, records.SHARD_PREFIX + "-*"))
    manifest = records.read_manifest(out) if fileio.exists(fileio.join(out, records.MANIFEST)) else None
    if cfg.overwrite:
        for path in shards + fileio.glob(fileio.join(out, STATE_DIR, "*")):
            fileio.remove(path)
        if manifest is not None:
            fileio.remove(fileio.join(out, records.MANIFEST))
        shards, manifest = [], None
    hint = "pass --overwrite to replace it"
    if fileio.exists(config_path) and fileio.glob(fileio.join(out, STATE_DIR, "shard-*.json")):
        try:
            old = json.loads(fileio.read_text(config_path))
        except ValueError as exc:
            raise UserError(f"corrupt build state {config_path}: {exc}; {hint}") from exc
        if old != identity:
            raise UserError(
                f"{out} holds a partial build with other settings ({_first_difference(old, identity)}); {hint}"
            )
        return
    if manifest is not None:
        old = {k: manifest.flags.get(k) for k in identity}
        if old != identity:
            raise UserError(f"{out} holds records built with other settings ({_first_difference(old, identity)}); {hint}")
        raise UserError(f"{out} has a manifest but not all {identity['num_shards']} shards; {hint}")
    if shards:
        raise UserError(f"{out} already holds {records.SHARD_PREFIX} files from another run (no manifest); {hint}")
    fileio.write_text(config_path, _json(identity))


def _config_path(output_dir: str) -> str:
    return fileio.join(output_dir, STATE_DIR, "config.json")


def _finished(cfg: BuildConfig, num_shards: int) -> dict[int, ShardResult]:
    done = {}
    shards = set(fileio.glob(fileio.join(cfg.output_dir, records.SHARD_PREFIX + "-*")))
    for i in range(num_shards):
        stats = _stats_path(cfg.output_dir, i, num_shards)
        if fileio.join(cfg.output_dir, records.shard_name(i, num_shards)) in shards and fileio.exists(stats):
            done[i] = ShardResult(**json.loads(fileio.read_text(stats)))
    return done


# ---- the stage ------------------------------------------------------------------------------


class BuildSummary(NamedTuple):
    manifest: records.Manifest
    seconds: float
    kept_shards: int  # finished shards of an interrupted run that were kept
    up_to_date: bool  # the directory already held this build: nothing was done

    @property
    def tokens_per_second(self) -> float:
        return self.manifest.num_tokens / max(self.seconds, 1e-9)


def _run_tasks(cfg: BuildConfig, settings: vocab_files.VocabSettings, tasks: list[ShardTask]) -> list[ShardResult]:
    """Build the shards, in this process or a pool; the progress bar (input bytes) moves as
    shards finish."""
    from tqdm import tqdm

    def task_bytes(task: ShardTask) -> int:
        return sum((s.end if s.end is not None else fileio.size(s.path)) - s.start for s in task.spans)

    sizes = {t.index: task_bytes(t) for t in tasks}
    results: list[ShardResult] = []
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc="build",
                                       file=sys.stderr, disable=None))  # None: no bar off a terminal
        if cfg.num_processes == 1 or len(tasks) == 1:
            finished: Iterable[ShardResult] = map(ShardBuilder(cfg, settings).build, tasks)
        else:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(  # no fork after TF threads
                min(cfg.num_processes, len(tasks)),
                initializer=_init_worker,
                initargs=(cfg, settings),
                maxtasksperchild=cfg.files_per_process or None,
            ))
            finished = pool.imap_unordered(_build_in_worker, tasks)
        for result in finished:
            results.append(result)
            bar.update(sizes[result.index])
            bar.set_postfix_str(f"{sum(r.examples for r in results):,} examples", refresh=False)
    return results


def build(cfg: BuildConfig) -> BuildSummary:
    """Build (or finish building) the record directory described by `cfg`."""
    start = time.monotonic()
    tokens = vocab_files.load_vocab(cfg.vocab_file)  # checks the special tokens
    settings = tokenization.resolve_settings(
        cfg.vocab_file, cfg.do_lower_case, cfg.strip_accents, cfg.max_input_chars_per_word
    )
    files = list_inputs(cfg.corpus_dir)
    num_shards = cfg.num_shards or auto_num_shards(sum(f.weight for f in files), cfg.num_processes)
    identity = build_identity(cfg, settings, records.file_sha256(cfg.vocab_file), files, num_shards)
    out = StageOutput(
        cfg.output_dir,
        (cfg.corpus_dir, cfg.vocab_file),
        fileio.join(cfg.output_dir, records.MANIFEST),
        tuple(fileio.join(cfg.output_dir, records.shard_name(i, num_shards)) for i in range(num_shards)),
        scratch=(_config_path(cfg.output_dir),),
    )
    if not cfg.overwrite and out.finished(flags=identity):
        manifest = records.read_manifest(cfg.output_dir)
        assert manifest is not None
        return BuildSummary(manifest, time.monotonic() - start, 0, up_to_date=True)
    with out.writing():
        prepare_output_dir(cfg, identity)
        plan = plan_shards(files, num_shards)
        done = _finished(cfg, num_shards)
        tasks = [ShardTask(i, num_shards, tuple(spans)) for i, spans in enumerate(plan) if i not in done]
        results = {r.index: r for r in _run_tasks(cfg, settings, tasks)} if tasks else {}
        results.update(done)
        ordered = [results[i] for i in range(num_shards)]
        if not sum(r.examples for r in ordered):
            raise UserError(f"empty corpus: no text lines in {cfg.corpus_dir}")
        manifest = records.Manifest(
            max_seq_length=cfg.max_seq_length,
            vocab_size=len(tokens),
            vocab_sha256=identity["vocab_sha256"],
            num_shards=num_shards,
            examples_per_shard=tuple(r.examples for r in ordered),
            num_tokens=sum(r.tokens for r in ordered),
            seed=cfg.seed,
            flags={**identity, "num_processes": cfg.num_processes, "files_per_process": cfg.files_per_process},
        )
        records.write_manifest(cfg.output_dir, manifest)
    for path in fileio.glob(fileio.join(cfg.output_dir, STATE_DIR, "*")):
        fileio.remove(path)
    if not fileio.is_gcs(cfg.output_dir):
        os.rmdir(os.path.join(cfg.output_dir, STATE_DIR))
    return BuildSummary(manifest, time.monotonic() - start, len(done), up_to_date=False)


# ---- command line ---------------------------------------------------------------------------


def _bool(text: str) -> bool:
    """The original declares `type=bool`, which makes "False" true; accept the usual spellings."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "y", "t"):
        return True
    if value in ("0", "false", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_flags(argv: Sequence[str] | None = None) -> BuildConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus-dir", required=True, help="Text file or directory of .txt/.gz files (local or gs://).")
    p.add_argument("--vocab-file", required=True, help="WordPiece vocab.txt (vocab_settings.json beside it is used).")
    p.add_argument("--output-dir", required=True, help="Where to write the shards and manifest.json.")
    p.add_argument("--max-seq-length", type=int, default=128, help="Tokens per example.")
    p.add_argument("--num-processes", type=int, default=1, help="Worker processes.")
    p.add_argument(
        "--blanks-separate-docs", type=_bool, default=True, help="Whether blank lines end documents (true/false)."
    )
    p.add_argument("--do-lower-case", dest="do_lower_case", action="store_true", default=None)
    p.add_argument("--no-lower-case", dest="do_lower_case", action="store_false", help="Default: keep case.")
    p.add_argument("--do-strip-accents", dest="strip_accents", action="store_true", default=None)
    p.add_argument(
        "--no-strip-accents", dest="strip_accents", action="store_false", help="Default: keep accents (Hangul-safe)."
    )
    p.add_argument(
        "--max-input-chars-per-word",
        type=int,
        default=None,
        help="Longer words become [UNK]: 100 (default, as transformers) or 200 (as the original FullTokenizer).",
    )
    p.add_argument("--num-shards", type=int, default=0, help="Output shards; 0 (default): from the data size.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the packing randomness.")
    p.add_argument("--tokenizer", choices=tokenization.BACKENDS, default="tokenizers", help="Tokeniser back end.")
    p.add_argument(
        "--files-per-process", type=int, default=0, help="Shards a worker writes before it is replaced (0: no limit)."
    )
    p.add_argument("--overwrite", action="store_true", help="Replace records from another run in --output-dir.")
    args = p.parse_args(argv)
    return BuildConfig.from_dict(vars(args))


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_flags(argv)
    summary = build(cfg)
    m = summary.manifest
    if summary.up_to_date:
        print(f"{cfg.output_dir} is up to date ({m.num_examples:,} examples, {m.num_tokens:,} tokens in "
              f"{m.num_shards} shards; same inputs and settings): skipped; --overwrite to redo")
        return 0
    print(
        f"wrote {m.num_examples:,} examples ({m.num_tokens:,} tokens) in {m.num_shards} shards to {cfg.output_dir} "
        f"in {summary.seconds:.1f}s, {summary.tokens_per_second:,.0f} tokens/s"
        + (f" (kept {summary.kept_shards} finished shards)" if summary.kept_shards else "")
    )
    return 0


def cli() -> None:
    run_cli(main)
