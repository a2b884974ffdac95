"""Vocab files and the tokenisation settings that travel with them.

A vocab directory holds `vocab.txt` (one token a line, id = line number),
`tokenizer.json` (Hugging Face `tokenizers`) and `vocab_settings.json` (`VocabSettings`).
Every later stage reads the settings from there, so the records, the training run and
the export all split text the same way the vocab was built.
"""
from __future__ import annotations

import dataclasses
import json
import os

from data_prep import bert_normalizer
from foundation import fileio
from foundation.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SETTINGS_FILE = "vocab_settings.json"


@dataclasses.dataclass(frozen=True)
class VocabSettings:
    """How text is split before WordPiece. Cased, no accent stripping by default:
    lower-casing with accent stripping decomposes Hangul into jamo (and then `[UNK]`)."""

    do_lower_case: bool = False
    strip_accents: bool = False
    pretokenizer: str = "bert"  # "bert" (whitespace + punctuation) or "mecab" (morphemes first)
    max_input_chars_per_word: int = 100  # longer words become [UNK]; HF default 100, original 200

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "VocabSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise UserError(f"unknown key '{key}' in {source}")
        return cls(**d)


def load_vocab(path: str) -> list[str]:
    """Tokens of a vocab file in id order; checks the special tokens and duplicates."""
    if not fileio.exists(path):
        raise UserError(f"vocab file not found: {path}")
    if not fileio.is_gcs(path):
        fileio.check_regular_file(path, "vocab file")
    try:
        tokens = fileio.read_text(path).split("\n")
    except UserError:
        raise
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise UserError(f"vocab file is empty: {path}")
    if tokens[0].startswith("\ufeff"):  # an editor's UTF-8 byte-order mark would glue itself to token 0
        raise UserError(f"vocab file {path} starts with a UTF-8 byte-order mark: save it without one "
                        f"(e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {path})")
    missing = [t for t in SPECIAL_TOKENS if t not in set(tokens)]
    if missing:
        raise UserError(f"vocab file {path} lacks special token(s) {' '.join(missing)}")
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in seen:
            raise UserError(f"vocab file {path} line {i + 1}: duplicate token {tok!r} (first on line {seen[tok] + 1})")
        seen[tok] = i
    return tokens


def load_settings(vocab_file: str) -> VocabSettings | None:
    """The settings saved beside a vocab file, or None when there are none (e.g. KoELECTRA's)."""
    path = fileio.join(os.path.dirname(vocab_file) or ".", SETTINGS_FILE)
    if not fileio.exists(path):
        return None
    try:
        d = json.loads(fileio.read_text(path))
    except ValueError as exc:
        raise UserError(f"corrupt settings file {path}: {exc}") from exc
    return VocabSettings.from_dict(d, path)


def make_hf_tokenizer(tokens: list[str], settings: VocabSettings):
    """A `tokenizers.Tokenizer` that splits exactly as BERT/ELECTRA WordPiece with `settings`.

    Unicode NFC first (Hangul stays composed syllables), then BERT's normaliser with the
    settings' case and accent rules, whitespace-and-punctuation pre-tokenisation, WordPiece,
    and `[CLS] A [SEP] B [SEP]` post-processing. The vocab builder, the record builder and the
    export all use this one function, so `tokenizer.json` and `vocab.txt` cannot disagree.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(
        models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=settings.max_input_chars_per_word)
    )
    tok.normalizer = bert_normalizer.hf_normalizer(settings)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok
