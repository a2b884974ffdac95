"""Per-line text normalisation: the `kcelectra` and `default` presets, as pure functions.

Both presets work on a block of lines joined by `\\n` at once (`clean_text`): one pass of
each rule over the block instead of one Python call per line is what makes the cleaner
fast. No rule can cross a `\\n`, so the result is the same as cleaning each line alone;
`clean_line` is that one-line case.

`kcelectra` gives byte for byte the output of the `clean()` that the KcELECTRA README
publishes: allowlist regex, `emoji.replace_emoji`, URL removal, strip, soynlp
`repeat_normalize(num_repeats=2)`. The emoji pass is left out: after the allowlist no
emoji can remain (the test walks the `emoji` package's own search tree to prove it).
The repeat and whitespace rules run on the block's UTF-16 code units with numpy; all
characters the allowlist keeps lie in the Basic Multilingual Plane, so one unit is one
character there.

`default` is for pretraining text that keeps emoji (KcELECTRA's released models keep
them): NFC, invisible format characters removed, URLs and e-mail addresses removed,
a character repeated four or more times cut to two (digits excepted: 1000000 stays), and
whitespace runs made one space.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import numpy as np

PRESETS = ("kcelectra", "default")

# --- kcelectra: the published rules, verbatim -------------------------------------------
KC_ALLOWED = " .,?!/@$%~％·∼()\x00-\x7Fㄱ-ㅣ가-힣"
KC_URL_RE = re.compile(
    r"https?:\/\/(www\.)?[-a-zA-Z0-9@:%._\+~#=]{1,256}\.[a-zA-Z0-9()]{1,6}\b([-a-zA-Z0-9()@:%_\+.~#?&//=]*)"
)


def _unit_table(char_class: str) -> np.ndarray:
    """Which of the 65,536 UTF-16 code units `re` puts in `char_class` (surrogates: none)."""
    all_units = "".join(map(chr, range(0x10000)))  # index = code unit
    table = np.zeros(0x10000, dtype=bool)
    for match in re.finditer(f"(?:{char_class})+", all_units):
        table[match.start() : match.end()] = True
    return table


_ALLOWED = _unit_table(f"[{KC_ALLOWED}]")
# `\w` and `\s` exactly as Python's `re` defines them; `\n` is the line separator of a
# block, never inside a line.
_WORD = _unit_table(r"\w")
_SPACE = _unit_table(r"[^\S\n]")
_NL = np.uint16(10)
_SP = np.uint16(32)


def _runs(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of every maximal run of equal units."""
    n = len(units)
    is_start = np.empty(n, dtype=bool)
    is_start[:1] = True
    np.not_equal(units[1:], units[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    return starts, np.diff(np.append(starts, n))


def _shorten_repeats(units: np.ndarray) -> np.ndarray:
    """soynlp `repeat_normalize(num_repeats=2)`: `(\\w)\\1{3,}` -> `\\1\\1`."""
    starts, lengths = _runs(units)
    long = (lengths >= 4) & _WORD[units[starts]]
    if not long.any():
        return units
    keep = np.ones(len(units), dtype=bool)
    for start, length in zip(starts[long].tolist(), lengths[long].tolist()):
        keep[start + 2 : start + length] = False
    return units[keep]


def _squeeze_spaces(units: np.ndarray) -> np.ndarray:
    """Each line's `' '.join(line.split())`: whitespace runs -> one space, ends stripped."""
    space = _SPACE[units]
    if not space.any():
        return units
    units = np.where(space, _SP, units)
    first_of_run = np.ones(len(units), dtype=bool)
    first_of_run[1:] = ~(space[1:] & space[:-1])
    units, space = units[first_of_run], space[first_of_run]
    line_edge = units == _NL
    after_edge = np.ones(len(units), dtype=bool)
    after_edge[1:] = line_edge[:-1]
    before_edge = np.ones(len(units), dtype=bool)
    before_edge[:-1] = line_edge[1:]
    return units[~(space & (after_edge | before_edge))]


def _kcelectra(text: str) -> str:
    units = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), dtype=np.uint16)
    if len(units) == 0:
        return text
    allowed = _ALLOWED[units]
    if not allowed.all():  # a run of disallowed characters becomes one space
        first = np.ones(len(units), dtype=bool)
        first[1:] = allowed[1:] | allowed[:-1]
        units = np.where(allowed, units, _SP)[first]
    if "http" in text:  # the allowlist cannot create "http", only remove it
        allowed_text = units.tobytes().decode("utf-16-le")
        allowed_text, removed = KC_URL_RE.subn("", allowed_text)
        if removed:
            units = np.frombuffer(allowed_text.encode("utf-16-le"), dtype=np.uint16)
            if len(units) == 0:
                return ""
    return _squeeze_spaces(_shorten_repeats(units)).tobytes().decode("utf-16-le")


# --- default: pretraining text with emoji ----------------------------------------------
# Zero-width and direction marks, soft hyphen, BOM: invisible, they only split words.
# ZWJ (U+200D) and variation selectors stay: emoji sequences need them.
_INVISIBLE_RE = re.compile("[\u00ad\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]+")
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]+")
_URL_RE = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.ASCII)
_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b", re.ASCII)
_REPEAT_RE = re.compile(r"([^\s\d])\1{3,}")
_SPACES_RE = re.compile(r"[^\S\n]+")


def _default(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE_RE.sub("", text)
    text = _CONTROL_RE.sub(" ", text)
    text = _URL_RE.sub(" ", text)
    text = _EMAIL_RE.sub(" ", text)
    text = _REPEAT_RE.sub(r"\1\1", text)
    return "\n".join(line.strip() for line in _SPACES_RE.sub(" ", text).split("\n"))


_CLEANERS = {"kcelectra": _kcelectra, "default": _default}


def check_preset(preset: str) -> str:
    if preset not in _CLEANERS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def clean_text(text: str, preset: str) -> str:
    """Clean a block of lines joined by `\\n`; the result has exactly as many lines."""
    return _CLEANERS[check_preset(preset)](text)


def clean_lines(lines: Sequence[str], preset: str) -> list[str]:
    """Clean each line (lines must not contain `\\n`); one output line per input line."""
    if not lines:
        return []
    return clean_text("\n".join(lines), preset).split("\n")


def clean_line(line: str, preset: str) -> str:
    return clean_text(line, preset)
