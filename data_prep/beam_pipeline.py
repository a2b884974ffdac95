"""`electra-beam`: the data stages as one Apache Beam pipeline, for corpora past one machine.

    electra-beam --input RAW_DIR --output-dir OUT [--vocab-file VOCAB] [--near-dedupe] \\
        [--runner DataflowRunner --project P --region R --temp_location gs://B/tmp \\
         --num_workers 20 --setup_file ./setup.py]

A different runner for the same functions as `electra-clean` and `electra-build-data`:

    read + clean + per-line filters   `clean_worker.read_chunks`/`clean_chunk` (one file per worker)
    global exact dedupe               by `filters.dedupe_key`; the first (file, line) wins
    near-duplicates (--near-dedupe)   `minhash`: LSH buckets, a later line similar to an
                                      earlier one is dropped (Jaccard >= --near-threshold)
    documents + document filter       lines regrouped by document, `filters.document_too_short`
    vocab sample                      a uniform sample of lines (bottom-k of a seeded hash)
    vocab (without --vocab-file)      `vocab_train.run` on the sample, on one worker
    tokenise + pack                   `records_worker.document_examples`, seeded per document
    shards + manifest                 `records` schema and names; shard = hash of the example

Everything is a function of the input and `--seed`, never of how Beam splits the work, so the
records hold the same examples as the single-machine tools and `clean_stats.json` the same
numbers. Output (local or gs://): OUT/clean_stats.json, OUT/vocab_sample/{sample.txt,
sample_stats.json}, OUT/records/pretrain_data.tfrecord-I-of-N + manifest.json. Without
`--vocab-file`, one worker builds OUT/vocab/ from the sample with `vocab_train.run` (electra-vocab)
and the records use it. Nothing here is specific to a runner.

The cleaning half is `beam_clean`, the sample and records half `beam_records`; this module
puts them into one pipeline and holds its settings and command line.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, NamedTuple, Sequence

from data_prep import minhash, records, vocab_files, vocab_train
from data_prep.beam_clean import (
    FirstAndCount, StatsCombine, assemble_document, document_stats, input_files, read_and_clean,
    remove_near_duplicates, stats_part, NEAR_DUPLICATE,
)
from data_prep.beam_import import PipelineOptions, beam
from data_prep.beam_records import (
    SAMPLE_STATS_FILE, CharCounts, PackDocuments, sample_rank, write_records_shard, write_sample,
)
from data_prep.filters import (
    STATS_FILE, CleanStats, FilterConfig, add_filter_flags, document_too_short, filters_from_flags,
)
from data_prep.normalize import PRESETS
from data_prep.packing import MIN_SEQ_LENGTH
from foundation import console, fileio
from foundation.errors import UserError, run_cli
from foundation.stage_output import StageOutput

RECORDS_DIR = "records"
SAMPLE_DIR = "vocab_sample"
VOCAB_DIR = "vocab"  # the vocab built from the sample (without --vocab-file)
MERGE_COPY = "merge_vocab.txt"  # the merge vocab, copied beside the sample so that workers can read it


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """Everything one pipeline run depends on (besides Beam's own options); validated here."""

    inputs: tuple[str, ...]
    output_dir: str
    preset: str = "default"
    filters: FilterConfig = FilterConfig()
    near_dedupe: bool = False
    near: minhash.MinHashConfig = minhash.MinHashConfig()
    vocab_sample_lines: int = 1_000_000  # 0: no sample
    vocab_file: str | None = None  # None: build one from the sample (electra-vocab's rules)
    vocab_size: int = vocab_train.VocabConfig.vocab_size  # of the trained vocab, when it is built here
    merge_with: str | None = vocab_train.DEFAULT_MERGE_VOCAB  # merged into the built vocab; None: not merged
    max_seq_length: int = 128
    num_shards: int = 1
    seed: int = 0  # as electra-build-data
    chunk_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UserError("no --input given")
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.vocab_sample_lines < 0 or self.seed < 0:
            raise UserError(f"vocab_sample_lines and seed must be >= 0, got {self.vocab_sample_lines}, {self.seed}")
        for name in ("num_shards", "chunk_bytes"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_file is None and not self.vocab_sample_lines:
            raise UserError("without --vocab-file the vocab is built from the sample: --vocab-sample-lines must be > 0")
        if self.max_seq_length < MIN_SEQ_LENGTH:
            raise UserError(f"max_seq_length must be >= {MIN_SEQ_LENGTH}, got {self.max_seq_length}")


def build_vocab(sample_path: str, config: BeamConfig) -> str:
    """`electra-vocab` on the sample, on one worker; returns the new vocab.txt."""
    merge = fileio.join(config.output_dir, SAMPLE_DIR, MERGE_COPY) if config.merge_with else None
    out = fileio.join(config.output_dir, VOCAB_DIR)
    vocab_train.run(vocab_train.VocabConfig(inputs=(sample_path,), output=out, vocab_size=config.vocab_size, merge_with=merge))
    return fileio.join(out, "vocab.txt")


def finish_records(shards: list[tuple[int, int, int, int]], config: BeamConfig, out_dir: str, vocab_file: str) -> None:
    """Empty files for shards that no example fell into, then the manifest (written last)."""
    done = {index: (count, tokens, cut) for index, count, tokens, cut in shards}
    for index in range(config.num_shards):
        if index not in done:
            records.write_shard(fileio.join(out_dir, records.shard_name(index, config.num_shards)), [])
    manifest = records.Manifest(
        max_seq_length=config.max_seq_length,
        vocab_size=len(vocab_files.load_vocab(vocab_file)),
        vocab_sha256=records.file_sha256(vocab_file),
        num_shards=config.num_shards,
        examples_per_shard=tuple(done.get(i, (0, 0, 0))[0] for i in range(config.num_shards)),
        num_tokens=sum(tokens for _, tokens, _ in done.values()),
        cut_tokens=sum(cut for _, _, cut in done.values()),
        seed=config.seed,
        flags={"tool": "electra-beam", **config_flags(config), "vocab_file": vocab_file},
    )
    records.write_manifest(out_dir, manifest)


def config_flags(config: BeamConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["inputs"] = list(config.inputs)
    return d


# --- the pipeline ------------------------------------------------------------------------
def build_pipeline(p: beam.Pipeline, config: BeamConfig, files: list[str]) -> None:
    """Add every stage to `p`; the outputs land under `config.output_dir`."""
    out, filters = config.output_dir, config.filters
    read = (
        p
        | "Files" >> beam.Create(list(enumerate(files)))
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadClean" >> beam.FlatMap(read_and_clean, config.preset, filters, config.chunk_bytes).with_outputs(
            "stats", main="lines")
    )
    lines, stat_parts = read.lines, [read.stats]

    if filters.dedupe:
        firsts = (
            lines
            | "ByDedupeKey" >> beam.Map(lambda line: (line.key, line))
            | "FirstPerKey" >> beam.CombinePerKey(FirstAndCount())
            | "DropKey" >> beam.Values()
        )
        lines = firsts | "First" >> beam.Map(lambda fc: fc[0])
        stat_parts.append(
            firsts
            | "Duplicates" >> beam.Map(lambda fc: fc[1] - 1)
            | "SumDuplicates" >> beam.CombineGlobally(sum)
            | "DuplicateStats" >> beam.Map(lambda n: stats_part(dropped={"duplicate": n}))
        )
    if config.near_dedupe:
        lines, removed = remove_near_duplicates(lines, config.near)
        stat_parts.append(removed | "NearStats" >> beam.Map(lambda n: stats_part(dropped={NEAR_DUPLICATE: n})))

    docs = (
        lines
        | "ByDocument" >> beam.Map(lambda line: (line.doc, (line.pos[1], line.text)))
        | "GroupDocument" >> beam.GroupByKey()
        | "Assemble" >> beam.Map(assemble_document)
    )
    stat_parts.append(docs | "DocumentStats" >> beam.Map(document_stats, filters))
    docs = docs | "DocumentFilter" >> beam.Filter(lambda doc: not document_too_short(len(doc[1]), filters))
    (
        stat_parts
        | "AllStats" >> beam.Flatten()
        | "MergeStats" >> beam.CombineGlobally(StatsCombine())
        | "WriteStats" >> beam.Map(lambda s: fileio.write_text(fileio.join(out, STATS_FILE), s.to_json()))
    )

    if config.vocab_sample_lines:
        texts = docs | "Lines" >> beam.FlatMap(lambda doc: doc[1])
        chars = texts | "CountChars" >> beam.CombineGlobally(CharCounts())
        count = texts | "CountLines" >> beam.combiners.Count.Globally()
        sample_path = (
            texts
            | "Sample" >> beam.combiners.Top.Smallest(config.vocab_sample_lines, key=lambda t: sample_rank(t, config.seed))
            | "WriteSample" >> beam.Map(write_sample, beam.pvalue.AsSingleton(chars), beam.pvalue.AsSingleton(count),
                                        fileio.join(out, SAMPLE_DIR))
        )

    if config.vocab_file:
        vocab_file = p | "VocabFile" >> beam.Create([config.vocab_file])
    else:
        vocab_file = sample_path | "BuildVocab" >> beam.Map(build_vocab, config)
    vocab_file = beam.pvalue.AsSingleton(vocab_file)
    records_dir = fileio.join(out, RECORDS_DIR)
    (
        docs
        | "Pack" >> beam.ParDo(PackDocuments(config.max_seq_length, config.seed, config.num_shards), vocab_file)
        | "ByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.Map(write_records_shard, records_dir, config.num_shards)
        | "AllShards" >> beam.combiners.ToList()
        | "Manifest" >> beam.Map(finish_records, config, records_dir, vocab_file)
    )


class Summary(NamedTuple):
    stats: CleanStats
    coverage: dict[str, Any] | None
    manifest: records.Manifest
    vocab_file: str  # given, or built from the sample
    seconds: float


def run(config: BeamConfig, options: PipelineOptions | None = None) -> Summary:
    """Run the pipeline (DirectRunner unless `options` say otherwise) and read back what it wrote."""
    start = time.monotonic()
    files = input_files(config.inputs)
    if config.vocab_file:
        vocab_files.load_vocab(config.vocab_file)  # a bad vocab fails here, not on a worker
    if config.vocab_file is None and config.merge_with:
        vocab_files.load_vocab(config.merge_with)
    read = config.inputs + tuple(p for p in (config.vocab_file, config.merge_with) if p)
    out = config.output_dir
    with StageOutput(out, read, fileio.join(out, RECORDS_DIR, records.MANIFEST)).writing():
        if config.vocab_file is None and config.merge_with:  # workers may not see the driver's files
            fileio.write_text(fileio.join(out, SAMPLE_DIR, MERGE_COPY), fileio.read_text(config.merge_with))
        with beam.Pipeline(options=options or PipelineOptions([])) as p:
            build_pipeline(p, config, files)
    stats = CleanStats(**json.loads(fileio.read_text(fileio.join(out, STATS_FILE))))
    coverage_path = fileio.join(out, SAMPLE_DIR, SAMPLE_STATS_FILE)
    coverage = json.loads(fileio.read_text(coverage_path)) if config.vocab_sample_lines else None
    manifest = records.read_manifest(fileio.join(out, RECORDS_DIR))
    assert manifest is not None
    vocab_file = config.vocab_file or fileio.join(out, VOCAB_DIR, "vocab.txt")
    return Summary(stats, coverage, manifest, vocab_file, time.monotonic() - start)


# --- command line ------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> tuple[BeamConfig, PipelineOptions]:
    """Our flags into a `BeamConfig`; the rest are Beam's own (`--runner`, `--project`, ...)."""
    p = console.parser(prog="electra-beam", description=__doc__.split("\n")[0],
                                epilog="Other flags go to Beam: --runner, --project, --region, --temp_location, "
                                       "--num_workers, --setup_file, ... (see docs/scale_out.md).")
    p.add_argument("--input", action="append", required=True, help="Text file or directory (local or gs://); repeatable.")
    p.add_argument("--output-dir", required=True, help="Where to write statistics, sample and records.")
    p.add_argument("--preset", choices=PRESETS, default="default", help="Cleaning rules (as electra-clean).")
    add_filter_flags(p)
    p.add_argument("--near-dedupe", action="store_true", help="Also drop near-duplicate lines (MinHash/LSH).")
    p.add_argument("--near-threshold", type=float, default=minhash.MinHashConfig.threshold,
                   help="Estimated Jaccard of character 5-grams at or above which a later line is dropped.")
    p.add_argument("--vocab-sample-lines", type=int, default=BeamConfig.vocab_sample_lines,
                   help="Lines in the uniform sample for vocab training (0: none).")
    p.add_argument("--vocab-file", default=None,
                   help="vocab.txt to tokenise with; without it a vocab is built from the sample (as electra-vocab).")
    p.add_argument("--vocab-size", type=int, default=BeamConfig.vocab_size,
                   help="Size of the vocab trained on the sample (without --vocab-file).")
    p.add_argument("--merge-with", default=BeamConfig.merge_with,
                   help="Vocab merged into the trained one ('none': no merge) "
                        "(default: the bundled KoELECTRA v1 vocab).")
    p.add_argument("--max-seq-length", type=int, default=BeamConfig.max_seq_length, help="Tokens per example.")
    p.add_argument("--num-shards", type=int, default=BeamConfig.num_shards, help="Record shards written.")
    p.add_argument("--seed", type=int, default=BeamConfig.seed, help="Seed of the packing randomness.")
    args, beam_args = p.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options()))
    if unknown:
        raise UserError(f"unknown flag(s): {', '.join('--' + u for u in unknown)}")
    config = BeamConfig(
        inputs=tuple(args.input),
        output_dir=args.output_dir,
        preset=args.preset,
        filters=filters_from_flags(args),
        near_dedupe=args.near_dedupe,
        near=minhash.MinHashConfig(threshold=args.near_threshold),
        vocab_sample_lines=args.vocab_sample_lines,
        vocab_file=args.vocab_file,
        vocab_size=args.vocab_size,
        merge_with=None if args.merge_with == "none" else args.merge_with,
        max_seq_length=args.max_seq_length,
        num_shards=args.num_shards,
        seed=args.seed,
    )
    return config, options


def main(argv: Sequence[str] | None = None) -> int:
    config, options = parse_args(argv)
    summary = run(config, options)
    print(f"cleaned: {summary.stats.summary()}")
    if summary.coverage:
        c = summary.coverage
        print(f"vocab sample: {c['sample_lines']:,} of {c['corpus_lines']:,} lines, character coverage "
              f"{c['char_coverage']:.4%} ({c['distinct_chars_sample']:,} of {c['distinct_chars_corpus']:,} characters) "
              f"-> {fileio.join(config.output_dir, SAMPLE_DIR)}")
    if config.vocab_file is None:
        print(f"vocab: {summary.manifest.vocab_size:,} tokens built from the sample -> {summary.vocab_file}")
    m = summary.manifest
    print(f"records: {m.num_examples:,} examples, {m.num_tokens:,} tokens in {m.num_shards} shard(s) -> "
          f"{fileio.join(config.output_dir, RECORDS_DIR)}")
    print(f"done in {summary.seconds:.1f}s")
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
