"""The vocab stage as a function (`run`): train a WordPiece vocab on cleaned text and merge it with
KoELECTRA's. Its command line is `vocab` (`electra-vocab`); the Beam pipeline calls `run` too.

BertWordPiece semantics as KoELECTRA trained its vocab with `tokenizers`: cased, no
accent stripping (both would turn Hangul into jamo), `limit_alphabet` 6000 and
`min_frequency` 2 (KoELECTRA passed no `min_frequency`; 2 is the library default it
got). Lines stream from the files; every `heldout_every`-th line is kept out of training
(up to `max_heldout_lines`) to measure the vocab on text it has not seen.

Writes to OUT_DIR: `vocab.txt`, `tokenizer.json` (from `vocab_files.make_hf_tokenizer`,
the one builder every stage uses), `vocab_settings.json` and `vocab_report.json`.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import re
import sys
import time
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

import electra_data
from foundation import fileio
from foundation.errors import UserError
from foundation.stage_output import StageOutput, input_fingerprint
from data_prep.pretokenize import PRETOKENIZERS, get_pretokenizer
from data_prep.vocab_files import SETTINGS_FILE, SPECIAL_TOKENS, VocabSettings, load_vocab, make_hf_tokenizer

DEFAULT_MERGE_VOCAB = electra_data.KOELECTRA_VOCAB
REPORT_FILE = "vocab_report.json"
_UNUSED_RE = re.compile(r"\[unused\d+\]$")
Pretok = Optional[Callable[[str], str]]  # the morpheme splitter, or None


@dataclasses.dataclass(frozen=True)
class VocabConfig:
    """Everything one vocab build depends on; validated here."""

    inputs: tuple[str, ...]
    output: str
    vocab_size: int = 30_000  # of the trained vocab, special tokens included
    limit_alphabet: int = 6000  # KoELECTRA's; the tokenizers default (1000) leaves Hangul [UNK]
    min_frequency: int = 2
    do_lower_case: bool = False
    strip_accents: bool = False
    pretokenizer: str = "bert"
    max_input_chars_per_word: int = 100
    merge_with: str | None = DEFAULT_MERGE_VOCAB  # None: the trained vocab alone
    num_unused: int = 0  # `[unusedN]` slots appended at the end
    heldout_every: int = 100  # 0: no held-out report
    max_heldout_lines: int = 10_000
    overwrite: bool = False  # rebuild even when OUT_DIR already holds this exact build

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UserError("no input given")
        for name in ("vocab_size", "limit_alphabet", "min_frequency", "max_input_chars_per_word"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        for name in ("num_unused", "heldout_every", "max_heldout_lines"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"{name} must be a non-negative integer, got {value!r}")
        if self.vocab_size <= len(SPECIAL_TOKENS):
            raise UserError(
                f"vocab_size {self.vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} special tokens "
                f"({' '.join(SPECIAL_TOKENS)})"
            )
        if self.pretokenizer not in PRETOKENIZERS:
            raise UserError(f"unknown pretokenizer {self.pretokenizer!r}; choose one of {', '.join(PRETOKENIZERS)}")

    @property
    def settings(self) -> VocabSettings:
        return VocabSettings(
            do_lower_case=self.do_lower_case,
            strip_accents=self.strip_accents,
            pretokenizer=self.pretokenizer,
            max_input_chars_per_word=self.max_input_chars_per_word,
        )


# --- merging (pure) ------------------------------------------------------------------------
class MergedVocab(NamedTuple):
    tokens: list[str]  # in id order
    num_trained: int  # trained tokens kept (special tokens not counted)
    num_added: int  # tokens taken from the other vocab
    overlap: int  # trained tokens that the other vocab has too


def merge_vocabs(trained: Sequence[str], other: Sequence[str], num_unused: int = 0) -> MergedVocab:
    """Special tokens once, then the trained tokens, then the other vocab's tokens not yet
    present, then `[unused0..num_unused-1]`. The other vocab's own `[unusedN]` slots are
    placeholders and are not carried over. Order and ids depend only on the inputs."""
    tokens = list(SPECIAL_TOKENS)
    seen = set(tokens)
    for tok in trained:
        if tok not in seen:
            tokens.append(tok)
            seen.add(tok)
    num_trained = len(tokens) - len(SPECIAL_TOKENS)
    other_set = set(other)
    overlap = sum(1 for tok in tokens[len(SPECIAL_TOKENS) :] if tok in other_set)
    for tok in other:
        if tok not in seen and not _UNUSED_RE.match(tok):
            tokens.append(tok)
            seen.add(tok)
    num_added = len(tokens) - len(SPECIAL_TOKENS) - num_trained
    # Cannot clash: WordPiece splits "[" off, and the other vocab's slots were skipped.
    tokens.extend(f"[unused{i}]" for i in range(num_unused))
    return MergedVocab(tokens, num_trained, num_added, overlap)


# --- reading -------------------------------------------------------------------------------
def iter_text_lines(files: Sequence[str]) -> Iterator[str]:
    """Non-blank lines of the cleaned files, decoded; bad bytes name the file and line."""
    for path in files:
        for number, raw in enumerate(fileio.iter_lines(path), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path} line {number} is not UTF-8 ({exc.reason}); run electra-clean first") from exc
            if line.strip():
                yield line


class _Split:
    """Streams training lines, setting aside every n-th for the held-out report and
    counting characters (after the tokenizer's normaliser) for the coverage report."""

    def __init__(
        self, lines: Iterator[str], config: VocabConfig, normalize: Callable[[str], str], pretok: Pretok
    ) -> None:
        self.lines, self.config, self.normalize, self.pretok = lines, config, normalize, pretok
        self.heldout: list[str] = []
        self.chars: collections.Counter = collections.Counter()
        self.train_lines = 0

    def __iter__(self) -> Iterator[str]:
        every = self.config.heldout_every
        for i, line in enumerate(self.lines):
            if every and i % every == every - 1 and len(self.heldout) < self.config.max_heldout_lines:
                self.heldout.append(line)
                continue
            self.train_lines += 1
            self.chars.update(self.normalize(line))
            yield self.pretok(line) if self.pretok else line


# --- reports -------------------------------------------------------------------------------
def alphabet_coverage(chars: collections.Counter, tokens: Sequence[str], limit_alphabet: int) -> dict[str, Any]:
    """How much of the training text's characters the vocab's single characters cover."""
    singles = {t for t in tokens if len(t) == 1}
    counts = [(ch, n) for ch, n in chars.most_common() if not ch.isspace()]
    total = sum(n for _, n in counts)
    covered = sum(n for ch, n in counts if ch in singles)
    missing = [ch for ch, _ in counts if ch not in singles]
    return {
        "limit_alphabet": limit_alphabet,
        "distinct_chars": len(counts),
        "distinct_chars_in_vocab": len(counts) - len(missing),
        "char_coverage": covered / total if total else 1.0,
        "most_frequent_missing": missing[:20],
    }


def heldout_report(tokenizer, lines: Sequence[str], pretok: Pretok) -> dict[str, Any]:
    """UNK rate, tokens per (whitespace) word and share of the vocab used, on held-out text."""
    if not lines:
        return {"lines": 0}
    unk = tokenizer.token_to_id("[UNK]")
    encodings = tokenizer.encode_batch([pretok(x) if pretok else x for x in lines], add_special_tokens=False)
    ids = [i for e in encodings for i in e.ids]
    words = sum(len(x.split()) for x in lines)
    return {
        "lines": len(lines),
        "words": words,
        "tokens": len(ids),
        "unk_rate": ids.count(unk) / len(ids) if ids else 0.0,
        "tokens_per_word": len(ids) / words if words else 0.0,
        "vocab_share_used": len(set(ids)) / tokenizer.get_vocab_size(),
    }


# --- the stage -----------------------------------------------------------------------------
def train_wordpiece(lines: Iterable[str], config: VocabConfig) -> list[str]:
    """A WordPiece vocab trained on `lines`: tokens in id order (special tokens first)."""
    from tokenizers import trainers

    tokenizer = make_hf_tokenizer(list(SPECIAL_TOKENS), config.settings)
    trainer = trainers.WordPieceTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        limit_alphabet=config.limit_alphabet,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=sys.stderr.isatty(),
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    # The trainer's own order (and, at equal counts, which token makes the cut) follows Rust
    # hash-map order and changes from run to run; sorting fixes the ids. WordPiece splits by
    # longest match, so the order never changes how text is split.
    trained = set(tokenizer.get_vocab()) - set(SPECIAL_TOKENS)
    return list(SPECIAL_TOKENS) + sorted(trained)


OUTPUT_FILES = ("vocab.txt", "tokenizer.json", SETTINGS_FILE, REPORT_FILE)


def _config_dict(config: VocabConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d.pop("overwrite")
    return {**d, "inputs": list(config.inputs)}


def run(config: VocabConfig) -> dict[str, Any]:
    """Build the vocab directory; returns the report. A rerun with the same inputs and
    settings finds the finished build and does nothing (`overwrite` to redo)."""
    start = time.perf_counter()
    files = [f for path in config.inputs for f in fileio.list_text_files(path)]
    other = load_vocab(config.merge_with) if config.merge_with else []
    read = config.inputs + ((config.merge_with,) if config.merge_with else ())
    out = StageOutput(config.output, read, fileio.join(config.output, REPORT_FILE),
                      tuple(fileio.join(config.output, name) for name in OUTPUT_FILES))
    fingerprint = input_fingerprint(files + ([config.merge_with] if config.merge_with else []))
    finished = None if config.overwrite else out.finished(config=_config_dict(config), inputs=fingerprint)
    if finished:
        print(f"electra-vocab: {config.output} is up to date (same inputs and settings); --overwrite to redo",
              file=sys.stderr)
        return finished
    pretok = get_pretokenizer(config.pretokenizer)
    with out.writing():
        report, summary = _train_and_write(config, files, other, pretok, fingerprint)
    print(f"{summary} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return report


def _over_size(trained: Sequence[str], vocab_size: int) -> str:
    """Why a trained vocab can be larger than asked: the trainer keeps the whole alphabet."""
    if len(trained) <= vocab_size:
        return ""
    chars = sum(1 for t in trained if len(t) == 1)
    suffixes = sum(1 for t in trained if len(t) == 3 and t.startswith("##"))
    return (f" (more than --vocab-size {vocab_size:,}: the trainer always keeps the alphabet, "
            f"{chars:,} characters and {suffixes:,} ## forms)")


def _train_and_write(config: VocabConfig, files: list[str], other: list[str], pretok: Pretok,
           fingerprint: list) -> tuple[dict[str, Any], str]:
    """Train, merge and write the four files (the report last); returns the report and a summary."""
    settings = config.settings
    if settings.do_lower_case or settings.strip_accents:
        print("warning: lower-casing/accent stripping decomposes Hangul into jamo", file=sys.stderr)
    normalizer = make_hf_tokenizer(list(SPECIAL_TOKENS), settings).normalizer
    split = _Split(iter_text_lines(files), config, normalizer.normalize_str, pretok)
    trained = train_wordpiece(split, config)
    if split.train_lines == 0:
        raise UserError(f"empty corpus: no text lines in {', '.join(config.inputs)}")
    merged = merge_vocabs(trained, other, config.num_unused)
    tokenizer = make_hf_tokenizer(merged.tokens, settings)
    report = {
        "train_lines": split.train_lines,
        "sizes": {
            "trained": len(trained),
            "merge_with": len(other),
            "merged": len(merged.tokens),
            "special": len(SPECIAL_TOKENS),
            "added_from_merge_vocab": merged.num_added,
            "unused": config.num_unused,
        },
        "merge_with": config.merge_with,
        "overlap": merged.overlap,
        "alphabet": alphabet_coverage(split.chars, trained, config.limit_alphabet),
        "heldout": heldout_report(tokenizer, split.heldout, pretok),
        "heldout_trained_only": heldout_report(make_hf_tokenizer(trained, settings), split.heldout, pretok),
        "config": _config_dict(config),
        "inputs": fingerprint,
    }
    out = config.output
    fileio.write_text(fileio.join(out, "vocab.txt"), "".join(t + "\n" for t in merged.tokens))
    fileio.write_text(fileio.join(out, "tokenizer.json"), tokenizer.to_str(pretty=True))
    fileio.write_text(fileio.join(out, SETTINGS_FILE), settings.to_json())
    fileio.write_text(fileio.join(out, REPORT_FILE), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    held = report["heldout"]
    return report, (
        f"electra-vocab: trained {len(trained):,} tokens{_over_size(trained, config.vocab_size)} on "
        f"{split.train_lines:,} lines, merged to "
        f"{len(merged.tokens):,} ({merged.overlap:,} overlap, {merged.num_added:,} added); "
        f"char coverage {report['alphabet']['char_coverage']:.4%}; held-out UNK rate "
        f"{held.get('unk_rate', 0):.4%}, {held.get('tokens_per_word', 0):.2f} tokens/word; "
        f"wrote {out}/vocab.txt"
    )
