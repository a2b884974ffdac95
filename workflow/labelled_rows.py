"""Labelled rows for the probe: NSMC-style TSV files, and the dev rows carved from the train file.

`id<TAB>document<TAB>label`, a header line, labels 0/1; a malformed line is one error naming the
file and line. Dev rows come right after the train rows of the *train* file, so the rates they
choose never saw a test row.
"""
from __future__ import annotations

from typing import NamedTuple

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
