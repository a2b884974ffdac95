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
import sys
from typing import Callable, Sequence

from data_prep import bert_normalizer, vocab_files
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

    An explicit flag wins; when it contradicts the vocab's saved settings we warn (one line),
    because the records will then split text differently from how the vocab was built. The
    records' manifest keeps the settings used, and a run trained on them exports a tokenizer
    with those (`pretrain.training.checkpoints.write_run_files`).
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
                print(f"warning: {key}={value} contradicts {vocab_files.SETTINGS_FILE} beside {vocab_file} "
                      f"({key}={getattr(saved, key)}); using {value}, recorded in the manifest (a model trained "
                      "on these records exports a tokenizer that splits as they were built)", file=sys.stderr)
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
    `make_hf_tokenizer` pipeline (tested against it and `transformers`); both normalise through
    `bert_normalizer`.
    """

    def __init__(self, tokens: list[str], settings: VocabSettings):
        super().__init__(tokens, settings)
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.hf = vocab_files.make_hf_tokenizer(tokens, settings)
        self.hf.normalizer = bert_normalizer.hf_normalizer(settings, prenormalized=True)
        self.hf.post_processor = None  # no [CLS]/[SEP] here: packing adds them

    def _encode(self, lines: Sequence[str]) -> list[list[int]]:
        lines = [bert_normalizer.prenormalize(line) for line in lines]
        encodings = self.hf.encode_batch_fast(lines, add_special_tokens=False)
        return [e.ids for e in encodings]


# BERT's split points, as RE2 patterns (`tokenizers`' BertPreTokenizer and the original's
# `_is_punctuation`/`_tokenize_chinese_chars`).
_PUNCT = r"[!-/:-@\[-`{-~]|\p{P}"
_SPACE = r"[\t\n\r\p{Z}]"


class TFTextTokenizer(Tokenizer):
    """The `tensorflow-text` back end; `tokenize` is a graph function usable in `tf.data`."""

    def __init__(self, tokens: list[str], settings: VocabSettings):
        super().__init__(tokens, settings)
        from foundation.quiet_tf import tf
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
        from foundation.quiet_tf import tf
        import tensorflow_text as tf_text

        s = self.settings
        text = bert_normalizer.tf_normalize(lines, s)
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
