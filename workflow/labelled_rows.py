"""Labelled rows for the probe: NSMC-style TSV files, and the dev rows carved from the train file.

`id<TAB>document<TAB>label`, a header line, labels 0/1; a malformed line is one error naming the
file and line. Dev rows come right after the train rows of the *train* file, so the rates they
choose never saw a test row. `text_key` and `drop_heldout` keep the rows that score a model out of
the text that pretrains it.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Iterator, NamedTuple

from foundation import fileio
from foundation.errors import UserError

TSV_HEADER = ("id", "document", "label")


class Split(NamedTuple):
    """Labelled rows of one TSV file."""

    texts: list[str]
    labels: list[int]


def read_split(path: str, max_rows: int = 0) -> Split:
    """Rows of an NSMC-style TSV (`id<TAB>document<TAB>label`, header line, label 0/1)."""
    if not fileio.exists(path):
        raise UserError(f"probe data not found: {path}")
    texts: list[str] = []
    labels: list[int] = []
    for number, raw in enumerate(fileio.iter_lines(path), start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} line {number}: not UTF-8 ({exc})") from exc
        fields = line.split("\t")
        if number == 1:
            if tuple(fields) != TSV_HEADER:
                raise UserError(f"{path} line 1: expected header {'<TAB>'.join(TSV_HEADER)}, got {line[:80]!r}")
            continue
        if not line:
            continue
        if len(fields) != 3:
            raise UserError(f"{path} line {number}: expected 3 tab-separated fields (id, document, label), "
                            f"got {len(fields)}")
        if fields[2] not in ("0", "1"):
            raise UserError(f"{path} line {number}: label must be 0 or 1, got {fields[2]!r}")
        texts.append(fields[1])
        labels.append(int(fields[2]))
        if max_rows and len(texts) >= max_rows:
            break
    if not texts:
        raise UserError(f"{path}: no data rows")
    return Split(texts, labels)


def split_train_dev(split: Split, train_rows: int, dev_rows: int, path: str) -> tuple[Split, Split]:
    """The first `train_rows` rows train, the next `dev_rows` choose the rates: disjoint, both from the train file."""
    if dev_rows and len(split.texts) < train_rows + dev_rows:
        raise UserError(f"{path} has {len(split.texts)} rows: not enough for {train_rows} train + {dev_rows} dev rows "
                        "(lower --max-train-rows or --dev-rows)")
    train_rows = train_rows or len(split.texts) - dev_rows
    return (Split(split.texts[:train_rows], split.labels[:train_rows]),
            Split(split.texts[train_rows : train_rows + dev_rows], split.labels[train_rows : train_rows + dev_rows]))


_NOT_WORD = re.compile(r"[\W_]+")


def text_key(text: str) -> str:
    """What two copies of one review share after any cleaning: NFKC, lower case, letters and digits only
    (spaces, punctuation and emoji dropped), so the cleaner's repeats and space rules cannot hide a copy."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text)).lower()


def heldout_keys(splits: Iterable[Split]) -> set[str]:
    """The keys of every row that scores a model (test and dev rows); rows with no letters or digits are left out."""
    return {key for split in splits for key in map(text_key, split.texts) if key}


class Exclusion(NamedTuple):
    """What a `HeldoutFilter` dropped: corpus lines read and dropped, held-out texts and how many occurred."""

    lines: int
    dropped: int
    heldout_texts: int
    heldout_found: int


class HeldoutFilter:
    """Drops every corpus line whose `text_key` is a held-out row's; streams, and counts what it dropped."""

    def __init__(self, keys: set[str]):
        self.keys = keys
        self.lines = self.dropped = 0
        self.found: set[str] = set()

    def __call__(self, lines: Iterable[str]) -> Iterator[str]:
        """`lines` less the held-out ones; blank lines (the document breaks) stay."""
        for line in lines:
            self.lines += 1
            key = text_key(line)
            if key and key in self.keys:
                self.dropped += 1
                self.found.add(key)
                continue
            yield line

    def result(self) -> Exclusion:
        return Exclusion(self.lines, self.dropped, len(self.keys), len(self.found))
