"""`electra-beam`'s records half: the uniform vocab sample and its coverage, then documents
tokenised and packed with `records_worker.document_examples` (as `electra-build-data`), dealt
to shards by the hash of each example and written in a fixed order.
"""
from __future__ import annotations

import collections
import hashlib
import json
from typing import Any, Sequence

from data_prep import records, tokenization
from data_prep.beam_import import beam
from data_prep.records_worker import document_examples
from foundation import fileio

SAMPLE_FILE = "sample.txt"
SAMPLE_STATS_FILE = "sample_stats.json"


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


# --- tokenise, pack, shard ---------------------------------------------------------------
def shard_of(example: bytes, seed: int, num_shards: int) -> int:
    """A shard for an example from its bytes alone, so the assignment ignores partitioning."""
    digest = hashlib.blake2b(example, digest_size=8, key=f"shard-{seed}".encode()).digest()
    return int.from_bytes(digest, "little") % num_shards


class PackDocuments(beam.DoFn):
    """(shard, (example, tokens)) for each example of a document, packed as `electra-build-data`
    packs it; the vocab is a side input (it may be built in the same pipeline), its tokenizer
    loaded once per worker."""

    def __init__(self, max_seq_length: int, seed: int, num_shards: int):
        self.max_seq_length, self.seed, self.num_shards = max_seq_length, seed, num_shards
        self.tokenizers: dict[str, tokenization.Tokenizer] = {}

    def process(self, doc, vocab_file: str):
        if vocab_file not in self.tokenizers:
            settings = tokenization.resolve_settings(vocab_file)
            self.tokenizers[vocab_file] = tokenization.load_tokenizer(vocab_file, settings)
        tokenizer, lines = self.tokenizers[vocab_file], doc[1]
        for example, tokens, cut in document_examples(tokenizer, tokenizer.encode_batch(lines),
                                                      lines[0].encode("utf-8"), self.max_seq_length, self.seed):
            yield shard_of(example, self.seed, self.num_shards), (example, tokens, cut)


def write_records_shard(item, out_dir: str, num_shards: int) -> tuple[int, int, int, int]:
    """Write one shard with its examples in a fixed order; (shard, examples, real tokens, tokens cut)."""
    index, examples = item
    ordered = sorted(examples)
    count = records.write_shard(fileio.join(out_dir, records.shard_name(index, num_shards)),
                                (e for e, _, _ in ordered))
    return index, count, sum(t for _, t, _ in ordered), sum(c for _, _, c in ordered)
