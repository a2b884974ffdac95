"""`electra-beam`: the data stages as one Apache Beam pipeline, for corpora past one machine.

    electra-beam --input RAW_DIR --output-dir OUT [--vocab-file VOCAB] [--near-dedupe] \\
        [--runner DataflowRunner --project P --region R --temp_location gs://B/tmp \\
         --num_workers 20 --setup_file ./setup.py]

A different runner for the same functions as `electra-clean` and `electra-build-data`:

    read + clean + per-line filters   `clean.read_chunks`/`clean.clean_chunk` (one file per worker)
    global exact dedupe               by `filters.dedupe_key`; the first (file, line) wins
    near-duplicates (--near-dedupe)   `minhash`: LSH buckets, a later line similar to an
                                      earlier one is dropped (Jaccard >= --near-threshold)
    documents + document filter       lines regrouped by document, `filters.document_too_short`
    vocab sample                      a uniform sample of lines (bottom-k of a seeded hash)
    vocab (without --vocab-file)      `vocab.run` on the sample, on one worker
    tokenise + pack                   `tokenization` + `packing` per document, seeded per document
    shards + manifest                 `records` schema and names; shard = hash of the example

Everything is a function of the input and `--seed`, never of how Beam splits the work, so the
records hold the same examples as the single-machine tools and `clean_stats.json` the same
numbers. Output (local or gs://): OUT/clean_stats.json, OUT/vocab_sample/{sample.txt,
sample_stats.json}, OUT/records/pretrain_data.tfrecord-I-of-N + manifest.json. Without
`--vocab-file`, one worker builds OUT/vocab/ from the sample with `vocab.run` (electra-vocab)
and the records use it. Nothing here is specific to a runner.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import logging
import time
from typing import Any, Iterator, NamedTuple, Sequence

logging.disable(logging.WARNING)  # Beam warns at import that the optional BigQuery client is missing
try:
    import apache_beam as beam
    from apache_beam import pvalue
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as _exc:  # the `beam` extra
    raise ImportError("the Beam pipeline needs Apache Beam: pip install -e '.[beam]'") from _exc
finally:
    logging.disable(logging.NOTSET)

from foundation import fileio
from data_prep import minhash, packing, records, vocab, vocab_files
from data_prep.build import MIN_SEQ_LENGTH
from data_prep.clean import STATS_FILE, Mark, clean_chunk, read_chunks
from data_prep.cleaning import PRESETS
from foundation.errors import UserError, run_cli
from foundation.stage_output import StageOutput
from data_prep.filters import CleanStats, FilterConfig, document_too_short

RECORDS_DIR = "records"
SAMPLE_DIR = "vocab_sample"
VOCAB_DIR = "vocab"  # the vocab built from the sample (without --vocab-file)
MERGE_COPY = "merge_vocab.txt"  # the merge vocab, copied beside the sample so that workers can read it
SAMPLE_FILE = "sample.txt"
SAMPLE_STATS_FILE = "sample_stats.json"
NEAR_DUPLICATE = "near_duplicate"  # drop reason added to the statistics with --near-dedupe


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
    vocab_size: int = vocab.VocabConfig.vocab_size  # of the trained vocab, when it is built here
    merge_with: str | None = vocab.DEFAULT_MERGE_VOCAB  # merged into the built vocab; None: not merged
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


# --- elements ----------------------------------------------------------------------------
class Line(NamedTuple):
    """A cleaned line that passed the per-line filters; positions are (file index, 1-based line)."""

    pos: tuple[int, int]
    doc: tuple[int, int]  # (file index, line number of the document's first line)
    text: str
    key: bytes


def input_files(inputs: Sequence[str]) -> list[str]:
    """The text files of all inputs in the order given, as `electra-clean` lists them: file index = position."""
    return [f for path in inputs for f in fileio.list_text_files(path)]


# --- read and clean: the local cleaner's per-chunk function, one file per worker -------------
def read_and_clean(item: tuple[int, str], preset: str, filters: FilterConfig, chunk_bytes: int) -> Iterator:
    """The kept lines of one file, cleaned by `clean_chunk`; its statistics as output "stats".

    A document ends at a blank line or at the end of its file.
    """
    file_index, path = item
    stats = CleanStats(files=1)
    doc_start = None  # first line of the current document; None between documents
    for chunk in read_chunks(path, chunk_bytes):
        result = clean_chunk((chunk, preset, filters, False))
        stats.merge(result.stats)
        for i, entry in enumerate(result.items):
            line_no = chunk.first_line + i
            if entry is Mark.BREAK:
                doc_start = None
                continue
            if doc_start is None:
                doc_start = line_no
                stats.documents_in += 1
            if entry is not Mark.DROPPED:
                text, key = entry
                yield Line((file_index, line_no), (file_index, doc_start), text, key)
    yield pvalue.TaggedOutput("stats", (file_index, stats))


class StatsCombine(beam.CombineFn):
    """Adds up (file index, partial `CleanStats`); non-UTF-8 locations are kept in file order.

    Counts add in any order; the location lists are few (files with bad bytes) and are
    ordered by file at the end, so the result equals the local cleaner's sequential merge.
    """

    def create_accumulator(self):
        return CleanStats(), []

    def add_input(self, acc, element):
        total, locations = acc
        file_index, part = element
        if part.non_utf8_locations:
            locations.append((file_index, part.non_utf8_locations))
            part = dataclasses.replace(part, non_utf8_locations=[])
        total.merge(part)
        return acc

    def merge_accumulators(self, accs):
        total, locations = CleanStats(), []
        for part, locs in accs:
            total.merge(part)
            locations += locs
        return total, locations

    def extract_output(self, acc):
        total, locations = acc
        for _, locs in sorted(locations, key=lambda x: x[0]):
            total.merge(CleanStats(non_utf8_locations=locs))
        total.documents_dropped = total.documents_in - total.documents_out
        return total


def stats_part(dropped: dict[str, int] | None = None, **counts: int) -> tuple[int, CleanStats]:
    """A partial statistic without locations (so its file index, -1, does not matter)."""
    stats = CleanStats(**counts)
    for reason, lines in (dropped or {}).items():
        stats.dropped[reason] = stats.dropped.get(reason, 0) + lines
    return -1, stats


# --- exact and near dedupe ---------------------------------------------------------------
class FirstAndCount(beam.CombineFn):
    """Per dedupe key: the first occurrence (smallest position) and how many lines had the key."""

    def create_accumulator(self):
        return None, 0

    def add_input(self, acc, line):
        first, count = acc
        return (line if first is None or line.pos < first.pos else first), count + 1

    def merge_accumulators(self, accs):
        first, count = None, 0
        for f, c in accs:
            if f is not None and (first is None or f.pos < first.pos):
                first = f
            count += c
        return first, count

    def extract_output(self, acc):
        return acc


class MinHashBands(beam.DoFn):
    """(band key, (position, signature)) for each LSH band of a line."""

    def __init__(self, config: minhash.MinHashConfig):
        self.config = config

    def setup(self):
        self.hasher = minhash.MinHasher(self.config)

    def process(self, line: Line):
        sig = self.hasher.signature(line.text)
        for band in minhash.band_keys(sig, self.config):
            yield band, (line.pos, sig)


def _drop_removed(item) -> list[Line]:
    _, groups = item
    return [] if groups["removed"] else list(groups["line"])


def remove_near_duplicates(lines, config: minhash.MinHashConfig):
    """Lines without the near-duplicates of earlier lines; and the count removed."""
    removed = (
        lines
        | "MinHash" >> beam.ParDo(MinHashBands(config))
        | "ByBand" >> beam.GroupByKey()
        | "LaterDuplicates" >> beam.FlatMap(lambda kv: [r for r, _ in minhash.later_duplicates(list(kv[1]), config.threshold)])
        | "DistinctRemoved" >> beam.Distinct()
    )
    kept = (
        {"line": lines | "ByPos" >> beam.Map(lambda line: (line.pos, line)),
         "removed": removed | "RemovedByPos" >> beam.Map(lambda pos: (pos, True))}
        | "JoinRemoved" >> beam.CoGroupByKey()
        | "DropRemoved" >> beam.FlatMap(_drop_removed)
    )
    count = removed | "CountRemoved" >> beam.combiners.Count.Globally()
    return kept, count


# --- documents ---------------------------------------------------------------------------
def assemble_document(item) -> tuple[tuple[int, int], list[str]]:
    """A document's kept lines in input order."""
    doc, lines = item
    return doc, [text for _, text in sorted(lines)]


def document_stats(doc: tuple[tuple[int, int], list[str]], filters: FilterConfig) -> tuple[int, CleanStats]:
    """The document filter's part of the statistics (documents_dropped is derived at the end)."""
    lines = doc[1]
    if document_too_short(len(lines), filters):
        return stats_part(dropped={"short_document": len(lines)})
    return stats_part(documents_out=1, lines_out=len(lines), chars_out=sum(map(len, lines)))


# --- the vocab sample --------------------------------------------------------------------
def sample_rank(text: str, seed: int) -> bytes:
    """A seeded hash of a line: the `n` smallest ranks are a uniform sample of the lines."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=f"sample-{seed}".encode()).digest()


class CharCounts(beam.CombineFn):
    """How often each character occurs in the corpus (a few thousand keys for Korean)."""

    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, acc, line):
        acc.update(line)
        return acc

    def merge_accumulators(self, accs):
        total = collections.Counter()
        for acc in accs:
            total.update(acc)
        return total

    def extract_output(self, acc):
        return acc


def sample_coverage(sample: Sequence[str], corpus_chars: collections.Counter, corpus_lines: int) -> dict[str, Any]:
    """How well the sample stands for the corpus: its share of lines and characters, and the
    share of the corpus's character occurrences whose character occurs in the sample (the
    rest can only come from the merged base vocab, or become `[UNK]`)."""
    sample_chars: collections.Counter = collections.Counter()
    for line in sample:
        sample_chars.update(line)
    total = sum(corpus_chars.values())
    covered = sum(n for c, n in corpus_chars.items() if c in sample_chars)
    return {
        "sample_lines": len(sample),
        "corpus_lines": corpus_lines,
        "line_fraction": len(sample) / corpus_lines if corpus_lines else 0.0,
        "sample_chars": sum(sample_chars.values()),
        "corpus_chars": total,
        "distinct_chars_sample": len(sample_chars),
        "distinct_chars_corpus": len(corpus_chars),
        "char_coverage": covered / total if total else 1.0,
        "missing_chars_most_frequent": [c for c, _ in corpus_chars.most_common() if c not in sample_chars][:50],
    }


def write_sample(sample: list[str], corpus_chars: collections.Counter, corpus_lines: int, out_dir: str) -> str:
    """Write the sample and its coverage; returns the sample's path."""
    path = fileio.join(out_dir, SAMPLE_FILE)
    fileio.write_text(path, "".join(line + "\n" for line in sample))
    coverage = sample_coverage(sample, corpus_chars, corpus_lines)
    fileio.write_text(fileio.join(out_dir, SAMPLE_STATS_FILE), json.dumps(coverage, indent=2, ensure_ascii=False) + "\n")
    return path


def build_vocab(sample_path: str, config: BeamConfig) -> str:
    """`electra-vocab` on the sample, on one worker; returns the new vocab.txt."""
    merge = fileio.join(config.output_dir, SAMPLE_DIR, MERGE_COPY) if config.merge_with else None
    out = fileio.join(config.output_dir, VOCAB_DIR)
    vocab.run(vocab.VocabConfig(inputs=(sample_path,), output=out, vocab_size=config.vocab_size, merge_with=merge))
    return fileio.join(out, "vocab.txt")


# --- tokenise, pack, shard ---------------------------------------------------------------
def shard_of(example: bytes, seed: int, num_shards: int) -> int:
    """A shard for an example from its bytes alone, so the assignment ignores partitioning."""
    digest = hashlib.blake2b(example, digest_size=8, key=f"shard-{seed}".encode()).digest()
    return int.from_bytes(digest, "little") % num_shards


class DocumentPacker:
    """One document's lines to serialised examples and their real-token counts, exactly as
    `build.ShardBuilder` does: tokenise the lines, pack with the document's own random stream."""

    def __init__(self, vocab_file: str, max_seq_length: int, seed: int):
        from data_prep import tokenization

        settings = tokenization.resolve_settings(vocab_file)
        self.vocab_file = vocab_file
        self.tokenizer = tokenization.load_tokenizer(vocab_file, settings)
        self.max_seq_length = max_seq_length
        self.seed = seed

    def examples(self, lines: list[str]) -> Iterator[tuple[bytes, int]]:
        t = self.tokenizer
        for features, tokens in packing.document_features(
            t.encode_batch(lines), lines[0].encode("utf-8"), self.max_seq_length, self.seed, t.cls_id, t.sep_id, t.pad_id
        ):
            yield records.encode_example(*features), tokens


class PackDocuments(beam.DoFn):
    """(shard, (example, tokens)) for each example of a document; the vocab (a side input, as it
    may be built in the same pipeline) is loaded once per worker."""

    def __init__(self, config: BeamConfig):
        self.config = config
        self.packer: DocumentPacker | None = None

    def process(self, doc, vocab_file: str):
        if self.packer is None or self.packer.vocab_file != vocab_file:
            self.packer = DocumentPacker(vocab_file, self.config.max_seq_length, self.config.seed)
        for example, tokens in self.packer.examples(doc[1]):
            yield shard_of(example, self.config.seed, self.config.num_shards), (example, tokens)


def write_records_shard(item, out_dir: str, num_shards: int) -> tuple[int, int, int]:
    """Write one shard with its examples in a fixed order; (shard, examples, real tokens)."""
    index, examples = item
    ordered = sorted(examples)
    count = records.write_shard(fileio.join(out_dir, records.shard_name(index, num_shards)), (e for e, _ in ordered))
    return index, count, sum(t for _, t in ordered)


def finish_records(shards: list[tuple[int, int, int]], config: BeamConfig, out_dir: str, vocab_file: str) -> None:
    """Empty files for shards that no example fell into, then the manifest (written last)."""
    done = {index: (count, tokens) for index, count, tokens in shards}
    for index in range(config.num_shards):
        if index not in done:
            records.write_shard(fileio.join(out_dir, records.shard_name(index, config.num_shards)), [])
    manifest = records.Manifest(
        max_seq_length=config.max_seq_length,
        vocab_size=len(vocab_files.load_vocab(vocab_file)),
        vocab_sha256=records.file_sha256(vocab_file),
        num_shards=config.num_shards,
        examples_per_shard=tuple(done.get(i, (0, 0))[0] for i in range(config.num_shards)),
        num_tokens=sum(tokens for _, tokens in done.values()),
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
        | "Pack" >> beam.ParDo(PackDocuments(config), vocab_file)
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
    p = argparse.ArgumentParser(prog="electra-beam", description=__doc__.split("\n")[0],
                                epilog="Other flags go to Beam: --runner, --project, --region, --temp_location, "
                                       "--num_workers, --setup_file, ... (see docs/scale_out.md).")
    p.add_argument("--input", action="append", required=True, help="Text file or directory (local or gs://); repeatable.")
    p.add_argument("--output-dir", required=True, help="Where to write statistics, sample and records.")
    p.add_argument("--preset", choices=PRESETS, default="default", help="Cleaning rules (as electra-clean).")
    p.add_argument("--min-line-chars", type=int, default=FilterConfig.min_line_chars)
    p.add_argument("--min-document-lines", type=int, default=FilterConfig.min_document_lines)
    p.add_argument("--no-dedupe", action="store_true", help="Keep exact duplicate lines.")
    p.add_argument("--keep-non-utf8", action="store_true", help="Keep lines with bad bytes (as U+FFFD).")
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
                   help="Vocab merged into the trained one ('none': no merge); default KoELECTRA v1.")
    p.add_argument("--max-seq-length", type=int, default=BeamConfig.max_seq_length)
    p.add_argument("--num-shards", type=int, default=BeamConfig.num_shards)
    p.add_argument("--seed", type=int, default=BeamConfig.seed)
    args, beam_args = p.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options()))
    if unknown:
        raise UserError(f"unknown flag(s): {', '.join('--' + u for u in unknown)}")
    config = BeamConfig(
        inputs=tuple(args.input),
        output_dir=args.output_dir,
        preset=args.preset,
        filters=FilterConfig(min_line_chars=args.min_line_chars, dedupe=not args.no_dedupe,
                             min_document_lines=args.min_document_lines, drop_non_utf8=not args.keep_non_utf8),
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
