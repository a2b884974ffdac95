"""BERT's text normalisation, defined once: NFC, control characters and U+FFFD dropped, CJK
ideographs spaced out, then the optional accent and case rules.

Three engines apply it and must agree id for id: the `tokenizers` pipeline that writes
`tokenizer.json` (`hf_normalizer`), the fast record builder that does the character steps in
Python first (`prenormalize` + `hf_normalizer(prenormalized=True)`), and the in-graph
`tensorflow-text` tokeniser (`tf_normalize`). They all build from the definitions here.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

# The original's `_is_chinese_char`: the CJK Unified Ideographs blocks (and their extensions and
# compatibility forms) that BERT splits into one-character words. Hangul and kana are not in it.
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
CJK_RE = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES) + "]")
CJK_RE2 = "[" + "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in CJK_RANGES) + "]"  # for tf.strings
CONTROL_RE2 = r"\x{0}|\x{FFFD}|[^\PC\t\n\r]"  # category C* except tab/newline/CR, NUL, U+FFFD


def prenormalize(line: str) -> str:
    """NFC, drop control characters (category C* but tab/newline/CR) and U+FFFD, space out CJK
    ideographs: `tokenizers`' NFC + BertNormalizer(clean_text, handle_chinese_chars) steps."""
    line = unicodedata.normalize("NFC", line)
    if not line.isprintable() or "\ufffd" in line:  # rare: only then look at each character
        line = "".join(
            c for c in line if c != "\ufffd" and (c in "\t\n\r" or unicodedata.category(c)[0] != "C")
        )
    return CJK_RE.sub(r" \g<0> ", line)


def hf_normalizer(settings: Any, *, prenormalized: bool = False) -> Any:
    """The `tokenizers` normaliser for `settings` (`do_lower_case`, `strip_accents`).

    With `prenormalized`, the line has been through `prenormalize` already: only the case and
    accent rules are left (None when neither applies).
    """
    from tokenizers import normalizers

    rules = normalizers.BertNormalizer(
        clean_text=not prenormalized,
        handle_chinese_chars=not prenormalized,
        strip_accents=settings.strip_accents,
        lowercase=settings.do_lower_case,
    )
    if prenormalized:
        return rules if settings.do_lower_case or settings.strip_accents else None
    return normalizers.Sequence([normalizers.NFC(), rules])


def tf_normalize(lines: Any, settings: Any) -> Any:
    """The same steps as TensorFlow ops on a [B] string tensor (usable inside `tf.data`)."""
    from foundation.quiet_tf import tf
    import tensorflow_text as tf_text

    text = tf_text.normalize_utf8(lines, "NFC")
    text = tf.strings.regex_replace(text, CONTROL_RE2, "")
    if settings.strip_accents:  # before lower-casing, as `tokenizers`' BertNormalizer
        text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), r"\p{Mn}", "")
    if settings.do_lower_case:
        text = tf.strings.lower(text, encoding="utf-8")
    return tf.strings.regex_replace(text, "(" + CJK_RE2 + ")", r" \1 ")
