"""Text to WordPiece ids: one interface, two fast back ends that agree id for id.

- `tokenizers` (default): the Hugging Face Rust tokenizer built by
  `vocab_files.make_hf_tokenizer` (the same function that writes `tokenizer.json` and the
  export), so the ids are what `transformers`' `ElectraTokenizerFast` gives at fine-tuning.
- `tf_text`: the same pipeline as TensorFlow ops (`tensorflow_text` regex split +
  `WordpieceTokenizer`), usable in-graph via `TFTextTokenizer.tokenize`.

Both do what BERT's `FullTokenizer` does: NFC, drop control characters, optional
lower-casing / accent stripping, split on whitespace, punctuation and CJK ideographs, then
greedy longest-match WordPiece. One known difference from the original is a setting,
`max_input_chars_per_word`: a word longer than this many characters becomes `[UNK]`;
Hugging Face uses 100 (our default, so ids equal `transformers`'), the original
`FullTokenizer` 200 (`--max-input-chars-per-word 200` for parity with it).

With `pretokenizer == "mecab"` in the settings, lines are split into morphemes by
`data_prep.pretokenize` (in Python) before either back end sees them.
"""
from __future__ import annotations

import os
import re
import unicodedata
import warnings
from typing import Callable, Sequence

from data_prep import vocab_files
from foundation.errors import UserError
from data_prep.vocab_files import VocabSettings

BACKENDS = ("tokenizers", "tf_text")
ORIGINAL_MAX_CHARS_PER_WORD = 200


def resolve_settings(
    vocab_file: str,
    do_lower_case: bool | None = None,
    strip_accents: bool | None = None,
    max_input_chars_per_word: int | None = None,
) -> VocabSettings:
    """The settings to tokenise with: `vocab_settings.json` beside the vocab, else cased defaults.

    An explicit flag wins; when it contradicts the vocab's saved settings we warn, because the
    records will then split text differently from how the vocab was built.
    """
    saved = vocab_files.load_settings(vocab_file)
    base = saved or VocabSettings()
    wanted = {
        "do_lower_case": do_lower_case,
        "strip_accents": strip_accents,
        "max_input_chars_per_word": max_input_chars_per_word,
    }
    overrides = {k: v for k, v in wanted.items() if v is not None}
    if overrides.get("max_input_chars_per_word", 1) < 1:
        raise UserError(f"max_input_chars_per_word must be >= 1, got {max_input_chars_per_word}")
    if saved is not None:
        for key, value in overrides.items():
            if getattr(saved, key) != value:
                warnings.warn(
                    f"{key}={value} contradicts {vocab_files.SETTINGS_FILE} beside {vocab_file} "
                    f"({key}={getattr(saved, key)}); using {value}",
                    stacklevel=2,
                )
    return VocabSettings(**{**vars(base), **overrides})


def _pretokenizer(settings: VocabSettings) -> Callable[[str], str] | None:
    if settings.pretokenizer == "bert":
        return None
    from data_prep import pretokenize

    return pretokenize.get_pretokenizer(settings.pretokenizer)


class Tokenizer:
    """Common part of the back ends: the vocab, its special ids, and pre-tokenisation."""

    def __init__(self, tokens: list[str], settings: VocabSettings):
        self.tokens = tokens
        self.settings = settings
        ids = {t: i for i, t in enumerate(tokens)}
        self.vocab_size = len(tokens)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            ids[t] for t in vocab_files.SPECIAL_TOKENS
        )
        self._pretokenize = _pretokenizer(settings)

    def encode_batch(self, lines: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each line, without `[CLS]`/`[SEP]`."""
        if self._pretokenize is not None:
            lines = [self._pretokenize(line) for line in lines]
        return self._encode(lines)

    def _encode(self, lines: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError


class HFTokenizer(Tokenizer):
    """The `tokenizers` back end (single-threaded: scale with processes, not threads).

    Speed: `tokenizers` tracks character alignments through every normaliser step, which
    costs as much as the WordPiece itself. We need no offsets, so the NFC, control-character
    and CJK steps run in Python's C string code first (`prenormalize`), and the Rust
    tokenizer keeps only the case/accent rules. The ids are those of the full
    `make_hf_tokenizer` pipeline (tested against it and `transformers`).
    """

    def __init__(self, tokens: list[str], settings: VocabSettings):
        super().__init__(tokens, settings)
        from tokenizers import normalizers

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.hf = vocab_files.make_hf_tokenizer(tokens, settings)
        keep_case_rules = settings.do_lower_case or settings.strip_accents
        self.hf.normalizer = (
            normalizers.BertNormalizer(
                clean_text=False,
                handle_chinese_chars=False,
                strip_accents=settings.strip_accents,
                lowercase=settings.do_lower_case,
            )
            if keep_case_rules
            else None
        )
        self.hf.post_processor = None  # no [CLS]/[SEP] here: packing adds them

    def _encode(self, lines: Sequence[str]) -> list[list[int]]:
        encodings = self.hf.encode_batch_fast([prenormalize(line) for line in lines], add_special_tokens=False)
        return [e.ids for e in encodings]


_CJK_RE = re.compile(
    "[\u4E00-\u9FFF\u3400-\u4DBF\U00020000-\U0002A6DF\U0002A700-\U0002B73F"
    "\U0002B740-\U0002B81F\U0002B820-\U0002CEAF\uF900-\uFAFF\U0002F800-\U0002FA1F]"
)


def prenormalize(line: str) -> str:
    """NFC, drop control characters (category C* but tab/newline/CR) and U+FFFD, space out CJK
    ideographs: `tokenizers`' NFC + BertNormalizer(clean_text, handle_chinese_chars) steps."""
    line = unicodedata.normalize("NFC", line)
    if not line.isprintable() or "\ufffd" in line:  # rare: only then look at each character
        line = "".join(
            c for c in line if c != "\ufffd" and (c in "\t\n\r" or unicodedata.category(c)[0] != "C")
        )
    return _CJK_RE.sub(r" \g<0> ", line)


# BERT's split points, as RE2 patterns (`tokenizers`' BertPreTokenizer and the original's
# `_is_punctuation`/`_tokenize_chinese_chars`).
_PUNCT = r"[!-/:-@\[-`{-~]|\p{P}"
_CJK_TF = (
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)
_CONTROL = r"\x{0}|\x{FFFD}|[^\PC\t\n\r]"  # category C* except tab/newline/CR, NUL, U+FFFD
_SPACE = r"[\t\n\r\p{Z}]"


class TFTextTokenizer(Tokenizer):
    """The `tensorflow-text` back end; `tokenize` is a graph function usable in `tf.data`."""

    def __init__(self, tokens: list[str], settings: VocabSettings):
        super().__init__(tokens, settings)
        import tensorflow as tf
        import tensorflow_text as tf_text

        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(tokens), tf.range(len(tokens), dtype=tf.int64)),
            default_value=-1,
        )
        self._wordpiece = tf_text.WordpieceTokenizer(
            table,
            suffix_indicator="##",
            max_bytes_per_word=4 * settings.max_input_chars_per_word,  # chars are checked below
            token_out_type=tf.int64,
            unknown_token="[UNK]",
        )
        self.tokenize = tf.function(self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)])

    def _tokenize(self, lines):
        """[B] strings -> ragged [B, (tokens)] int64 ids, no `[CLS]`/`[SEP]`."""
        import tensorflow as tf
        import tensorflow_text as tf_text

        s = self.settings
        text = tf_text.normalize_utf8(lines, "NFC")
        text = tf.strings.regex_replace(text, _CONTROL, "")
        if s.strip_accents:  # before lower-casing, as `tokenizers`' BertNormalizer
            text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), r"\p{Mn}", "")
        if s.do_lower_case:
            text = tf.strings.lower(text, encoding="utf-8")
        text = tf.strings.regex_replace(text, "(" + _CJK_TF + ")", r" \1 ")
        words = tf_text.regex_split(
            text, delim_regex_pattern=_SPACE + "+|" + _PUNCT, keep_delim_regex_pattern=_PUNCT
        )  # [B, (words)]
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > s.max_input_chars_per_word
        words = words.with_flat_values(tf.where(too_long, "[UNK]", words.flat_values))
        pieces = self._wordpiece.tokenize(words)  # [B, (words), (pieces)]
        return pieces.merge_dims(1, 2)

    def _encode(self, lines: Sequence[str]) -> list[list[int]]:
        ids = self.tokenize(list(lines))
        flat = ids.flat_values.numpy().tolist()
        splits = ids.row_splits.numpy()
        return [flat[a:b] for a, b in zip(splits[:-1], splits[1:])]


def load_tokenizer(vocab_file: str, settings: VocabSettings, backend: str = "tokenizers") -> Tokenizer:
    """The tokenizer for a vocab file with the given settings and back end."""
    if backend not in BACKENDS:
        raise UserError(f"unknown tokenizer back end {backend!r}; choose one of {', '.join(BACKENDS)}")
    tokens = vocab_files.load_vocab(vocab_file)
    cls = HFTokenizer if backend == "tokenizers" else TFTextTokenizer
    return cls(tokens, settings)
