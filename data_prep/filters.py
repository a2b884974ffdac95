"""Line and document filters, the dedupe key, and the statistics they produce.

Pure functions of (line or document, `FilterConfig`), so that the local cleaner and a
Beam pipeline apply the same rules; `CleanStats` adds up with `merge`, in any grouping.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from typing import Any

from foundation.errors import UserError

# Why a line left the corpus. `empty` is always applied: an empty line would read as a
# document break.
DROP_REASONS = ("non_utf8", "too_long", "empty", "too_short", "duplicate", "short_document")
STATS_FILE = "clean_stats.json"  # where a cleaned directory keeps its `CleanStats`
MAX_LOCATIONS = 100  # non-UTF-8 places listed in the statistics (all are counted)


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Which filters run. Zero/False switches a filter off."""

    min_line_chars: int = 10  # KcELECTRA drops cleaned lines shorter than 10 characters
    dedupe: bool = True  # exact duplicate lines across the whole corpus
    min_document_lines: int = 1  # documents left with fewer lines are dropped
    drop_non_utf8: bool = True  # False: keep such lines, bad bytes read as U+FFFD

    def __post_init__(self) -> None:
        for name in ("min_line_chars", "min_document_lines"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("dedupe", "drop_non_utf8"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be true or false, got {getattr(self, name)!r}")


def add_filter_flags(parser: argparse.ArgumentParser) -> None:
    """The filter flags, the same for `electra-clean` and `electra-beam`; read back with `filters_from_flags`."""
    d = FilterConfig()
    parser.add_argument("--min-line-chars", type=int, default=d.min_line_chars,
                        help="drop cleaned lines shorter than this (0: off)")
    parser.add_argument("--no-dedupe", action="store_true", help="keep exact duplicate lines")
    parser.add_argument("--min-document-lines", type=int, default=d.min_document_lines,
                        help="drop documents left with fewer lines")
    parser.add_argument("--keep-non-utf8", action="store_true",
                        help="keep lines with bad bytes (read as U+FFFD) instead of dropping them; counted either way")


def filters_from_flags(args: argparse.Namespace) -> FilterConfig:
    return FilterConfig(min_line_chars=args.min_line_chars, dedupe=not args.no_dedupe,
                        min_document_lines=args.min_document_lines, drop_non_utf8=not args.keep_non_utf8)


def is_document_break(raw_line: str) -> bool:
    """A blank (or whitespace-only) input line separates documents."""
    return not raw_line.strip()


def line_drop_reason(cleaned: str, config: FilterConfig) -> str | None:
    """Why a cleaned line is dropped, or None to keep it (dedupe is separate: it needs state)."""
    if not cleaned:
        return "empty"
    if len(cleaned) < config.min_line_chars:
        return "too_short"
    return None


def dedupe_key(line: str) -> bytes:
    """A 64-bit content hash: a set of these bounds dedupe memory by line count, not text size.

    Deterministic across processes and machines (unlike `hash()`). A false duplicate needs a
    64-bit collision: with 10^8 distinct lines the chance of any is about 3 in 10,000.
    """
    return hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()


def document_too_short(num_lines: int, config: FilterConfig) -> bool:
    return num_lines < config.min_document_lines or num_lines == 0


@dataclasses.dataclass
class CleanStats:
    """What went in, what came out, and why the rest was dropped; `merge` adds two up.

    `lines_in` counts text lines (document breaks excluded, except in keep-all mode where
    every line is one line), so `lines_in == lines_out + sum(dropped.values())`.
    """

    files: int = 0
    lines_in: int = 0
    chars_in: int = 0
    lines_out: int = 0
    chars_out: int = 0
    documents_in: int = 0
    documents_out: int = 0
    documents_dropped: int = 0
    non_utf8_lines: int = 0
    non_utf8_locations: list[str] = dataclasses.field(default_factory=list)  # "file:line", first ones
    dropped: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def drop(self, reason: str, lines: int = 1) -> None:
        self.dropped[reason] += lines

    def note_non_utf8(self, path: str, line_number: int) -> None:
        self.non_utf8_lines += 1
        if len(self.non_utf8_locations) < MAX_LOCATIONS:
            self.non_utf8_locations.append(f"{path}:{line_number}")

    def merge(self, other: "CleanStats") -> "CleanStats":
        """Add `other` into this one (in order: locations keep input order) and return self."""
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if isinstance(mine, int):
                setattr(self, field.name, mine + theirs)
            elif isinstance(mine, list):
                mine.extend(theirs[: MAX_LOCATIONS - len(mine)])
            else:
                for reason, count in theirs.items():
                    mine[reason] = mine.get(reason, 0) + count
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CleanStats":
        """From `to_dict`/`to_json` output; other keys (config, timing) are ignored."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def to_json(self, **extra: Any) -> str:
        return json.dumps({**self.to_dict(), **extra}, indent=2, ensure_ascii=False) + "\n"

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v:,}" for k, v in self.dropped.items() if v)
        return (
            f"{self.files} file(s), lines {self.lines_in:,} -> {self.lines_out:,}, "
            f"chars {self.chars_in:,} -> {self.chars_out:,}"
            + (f", documents {self.documents_in:,} -> {self.documents_out:,}" if self.documents_in else "")
            + (f"; dropped: {drops}" if drops else "")
            + (f"; non-UTF-8 lines: {self.non_utf8_lines:,}" if self.non_utf8_lines else "")
        )
