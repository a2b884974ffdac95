"""`electra-beam`'s cleaning half: read and clean one file per worker with `clean_worker`'s
functions, exact and near dedupe, documents and the document filter, and the statistics.

Everything is a function of the input, never of how Beam splits the work, so the statistics
equal `electra-clean`'s.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, NamedTuple, Sequence

from data_prep import minhash
from data_prep.beam_import import beam, pvalue
from data_prep.clean_worker import Mark, clean_chunk, read_chunks
from data_prep.filters import CleanStats, FilterConfig, document_too_short
from foundation import fileio

NEAR_DUPLICATE = "near_duplicate"  # drop reason added to the statistics with --near-dedupe


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
