"""`electra-build-data`: cleaned text + WordPiece vocab -> sharded pretraining TFRecords + manifest.

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

The plan (settings, inputs, byte ranges) is `records_plan`, one shard's work `records_worker`;
this module is resume (the output directory's identity and state) and the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, NamedTuple, Sequence

from data_prep import records, tokenization, vocab_files
from data_prep.records_plan import BuildConfig, InputFile, auto_num_shards, list_inputs, plan_shards
from data_prep.records_worker import STATE_DIR, ShardTask, finished_shards, run_shards
from foundation import console, fileio
from foundation.errors import UserError, run_cli
from foundation.stage_output import StageOutput


# ---- the output directory: identity, resume, manifest ---------------------------------------


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
    if cfg.overwrite:  # the manifest first (a reader's sign of finished records), unread: it may be damaged
        state = fileio.glob(fileio.join(out, STATE_DIR, "*"))
        for path in fileio.glob(fileio.join(out, records.MANIFEST)) + shards + state:
            fileio.remove(path)
        shards = []
    hint = "pass --overwrite to replace it"
    try:
        manifest = records.read_manifest(out)
    except UserError as exc:
        raise UserError(f"{exc}; {hint}") from exc
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
    fileio.write_text(config_path, json.dumps(identity, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _config_path(output_dir: str) -> str:
    return fileio.join(output_dir, STATE_DIR, "config.json")


# ---- the stage ------------------------------------------------------------------------------


class BuildSummary(NamedTuple):
    manifest: records.Manifest
    seconds: float
    kept_shards: int  # finished shards of an interrupted run that were kept
    up_to_date: bool  # the directory already held this build: nothing was done

    @property
    def tokens_per_second(self) -> float:
        return self.manifest.num_tokens / max(self.seconds, 1e-9)


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
        plan = plan_shards(files, num_shards, cut_files=cfg.blanks_separate_docs)
        done = finished_shards(cfg.output_dir, num_shards)
        tasks = [ShardTask(i, num_shards, tuple(spans)) for i, spans in enumerate(plan) if i not in done]
        pool = dataclasses.replace(cfg, num_processes=_workers(cfg.num_processes, len(tasks)))
        results = {r.index: r for r in run_shards(pool, settings, tasks)} if tasks else {}
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
            cut_tokens=sum(r.cut_tokens for r in ordered),
        )
        records.write_manifest(cfg.output_dir, manifest)
    for path in fileio.glob(fileio.join(cfg.output_dir, STATE_DIR, "*")):
        fileio.remove(path)
    if not fileio.is_gcs(cfg.output_dir):
        os.rmdir(os.path.join(cfg.output_dir, STATE_DIR))
    return BuildSummary(manifest, time.monotonic() - start, len(done), up_to_date=False)


def _workers(requested: int, tasks: int) -> int:
    """Worker processes: at most one per task and per CPU (more would only share the CPUs, each
    with its own memory; the records are the same for any number)."""
    cpus = os.cpu_count() or 1
    if min(requested, tasks) > cpus:
        print(f"warning: --num-processes {requested} is more than the {cpus} CPUs here: using {cpus} "
              "(the records are the same for any number)", file=sys.stderr)
    return max(1, min(requested, tasks, cpus))


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
    p = console.parser(prog=os.path.basename(sys.argv[0]), description=__doc__.split("\n")[0])
    p.add_argument("--corpus-dir", required=True, help="Text file or directory of .txt/.gz files (local or gs://).")
    p.add_argument("--vocab-file", required=True, help="WordPiece vocab.txt (vocab_settings.json beside it is used).")
    p.add_argument("--output-dir", required=True, help="Where to write the shards and manifest.json.")
    p.add_argument("--max-seq-length", type=int, default=128, help="Tokens per example.")
    p.add_argument("--num-processes", type=int, default=1, help="Worker processes.")
    p.add_argument(
        "--blanks-separate-docs", type=_bool, default=True, help="Whether blank lines end documents (true/false)."
    )
    p.add_argument("--do-lower-case", dest="do_lower_case", action="store_true", default=None,
                   help="Lower-case (not for Korean). Default: as vocab_settings.json says.")
    p.add_argument("--no-lower-case", dest="do_lower_case", action="store_false", default=None,
                   help="Keep case (default: as vocab_settings.json says).")
    p.add_argument("--do-strip-accents", dest="strip_accents", action="store_true", default=None,
                   help="Strip accents (decomposes Hangul). Default: as vocab_settings.json says.")
    p.add_argument(
        "--no-strip-accents", dest="strip_accents", action="store_false", default=None,
        help="Keep accents, Hangul-safe (default: as vocab_settings.json says)."
    )
    p.add_argument(
        "--max-input-chars-per-word",
        type=int,
        default=None,
        help="Longer words become [UNK]: 100 (default, as transformers) or 200 (as the original FullTokenizer).",
    )
    p.add_argument("--num-shards", type=int, default=0, help="Output shards; 0: from the data size.")
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
        + (f"; packing cut {m.cut_tokens:,} more ({m.cut_tokens / (m.cut_tokens + m.num_tokens):.1%}) from lines "
           "longer than an example, as the original does" if m.cut_tokens else "")
    )
    return 0


def cli() -> None:
    run_cli(main)
