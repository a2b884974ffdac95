"""Tokenisation: both back ends, `transformers` and the original FullTokenizer agree on real text."""
import json
import shutil
import sys

import pytest

from data_prep import bert_normalizer, tokenization, vocab_files
from foundation.errors import UserError
from data_prep.vocab_files import VocabSettings
from shared_paths import ORIGINAL_ELECTRA

PEER = str(ORIGINAL_ELECTRA)
# Hand-picked hard cases: CJK ideographs (split per character), control and format characters,
# ideographic space, tab, accents, U+FFFD, and words over 100 and 200 characters.
EDGE = [
    "漢字テスト 中文字 a\u3000b\x0bc\td\u200be",
    "café ÅNGSTRÖM naïve \ufffdx İstanbul",
    "ㅋ" * 150 + " 좋아요",
    "가" * 250,
    "URL: https://example.com/a?b=1 (괄호) [대괄호] ~물결~ ^^;; ...!!!",
]


@pytest.fixture(scope="module")
def lines(corpus_path):
    text = corpus_path.read_bytes().decode("utf-8")
    return [line.strip() for line in text.split("\n") if line.strip()] + EDGE


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, koelectra_vocab):
    """A tokenizer folder as `transformers` loads it for fine-tuning: vocab.txt + tokenizer_config.json."""
    d = tmp_path_factory.mktemp("hf_tok")
    shutil.copy(koelectra_vocab, d / "vocab.txt")
    (d / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": False, "strip_accents": False, "tokenizer_class": "ElectraTokenizer"})
    )
    return d


@pytest.fixture(scope="module")
def hf_ids(koelectra_vocab, lines):
    tok = tokenization.load_tokenizer(str(koelectra_vocab), VocabSettings())
    return tok.encode_batch(lines)


def test_ids_equal_transformers_electra_and_bert_tokenizers(hf_dir, lines, hf_ids):
    import transformers

    assert sum(map(len, hf_ids)) > 250_000
    for cls in (transformers.ElectraTokenizerFast, transformers.BertTokenizerFast):
        ref = cls.from_pretrained(str(hf_dir))(lines, add_special_tokens=False)["input_ids"]
        assert ref == hf_ids, cls.__name__


def test_ids_equal_the_exported_tokenizer_json(tmp_path, koelectra_vocab, lines, hf_ids):
    """The fast path (Python pre-normalisation) gives what the full `tokenizer.json` pipeline gives."""
    from tokenizers import Tokenizer

    tokens = vocab_files.load_vocab(str(koelectra_vocab))
    vocab_files.make_hf_tokenizer(tokens, VocabSettings()).save(str(tmp_path / "tokenizer.json"))
    full = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert [e.ids for e in full.encode_batch(lines, add_special_tokens=False)] == hf_ids


def test_tf_text_back_end_agrees_id_for_id(koelectra_vocab, lines, hf_ids):
    tok = tokenization.load_tokenizer(str(koelectra_vocab), VocabSettings(), backend="tf_text")
    assert tok.encode_batch(lines[:6000] + EDGE) == hf_ids[:6000] + hf_ids[-len(EDGE) :]


def test_lower_case_and_accent_stripping_agree(koelectra_vocab, lines):
    settings = VocabSettings(do_lower_case=True, strip_accents=True)
    sample = lines[:2000] + EDGE
    a = tokenization.load_tokenizer(str(koelectra_vocab), settings).encode_batch(sample)
    b = tokenization.load_tokenizer(str(koelectra_vocab), settings, backend="tf_text").encode_batch(sample)
    full = vocab_files.make_hf_tokenizer(vocab_files.load_vocab(str(koelectra_vocab)), settings)
    assert a == b == [e.ids for e in full.encode_batch(sample, add_special_tokens=False)]
    unk = 1
    assert sum(ids.count(unk) for ids in a) > 1000  # stripping accents decomposes Hangul: mostly [UNK]


def test_tf_text_tokenize_runs_in_graph(koelectra_vocab, lines, hf_ids):
    import tensorflow as tf

    tok = tokenization.load_tokenizer(str(koelectra_vocab), VocabSettings(), backend="tf_text")
    ds = tf.data.Dataset.from_tensor_slices(lines[:8]).batch(4).map(tok.tokenize)
    got = [row for batch in ds for row in batch.to_list()]
    assert got == hf_ids[:8]


def test_max_input_chars_per_word_flag(koelectra_vocab):
    long_word = "ㅋ" * 150
    for backend in tokenization.BACKENDS:
        hf = tokenization.load_tokenizer(str(koelectra_vocab), VocabSettings(), backend)
        orig = tokenization.load_tokenizer(
            str(koelectra_vocab), VocabSettings(max_input_chars_per_word=200), backend
        )
        assert hf.encode_batch([long_word]) == [[hf.unk_id]]
        pieces = orig.encode_batch([long_word])[0]
        assert len(pieces) > 1 and hf.unk_id not in pieces


def test_equals_original_full_tokenizer_with_200_chars(koelectra_vocab, lines):
    """With `max_input_chars_per_word=200`, cased: the original FullTokenizer's ids exactly."""
    sys.path.insert(0, PEER)
    try:
        from model import tokenization as original
    finally:
        sys.path.remove(PEER)
    full = original.FullTokenizer(str(koelectra_vocab), do_lower_case=False, strip_accents=False)
    sample = lines[:3000] + EDGE[1:]  # EDGE[0] holds a zero-width space the original keeps in a word
    want = [full.convert_tokens_to_ids(full.tokenize(line)) for line in sample]
    ours = tokenization.load_tokenizer(str(koelectra_vocab), VocabSettings(max_input_chars_per_word=200))
    assert ours.encode_batch(sample) == want


def test_settings_from_vocab_folder_and_conflicting_flags(tmp_path, koelectra_vocab, capsys):
    shutil.copy(koelectra_vocab, tmp_path / "vocab.txt")
    vocab = str(tmp_path / "vocab.txt")
    assert tokenization.resolve_settings(vocab) == VocabSettings()
    assert tokenization.resolve_settings(vocab, do_lower_case=True).do_lower_case
    (tmp_path / vocab_files.SETTINGS_FILE).write_text(VocabSettings(max_input_chars_per_word=200).to_json())
    assert tokenization.resolve_settings(vocab).max_input_chars_per_word == 200
    capsys.readouterr()
    assert tokenization.resolve_settings(vocab, do_lower_case=True).do_lower_case
    assert capsys.readouterr().err.startswith(f"warning: do_lower_case=True contradicts {vocab_files.SETTINGS_FILE} ")
    with pytest.raises(UserError, match="max_input_chars_per_word must be >= 1"):
        tokenization.resolve_settings(vocab, max_input_chars_per_word=0)


def test_unknown_back_end_and_missing_special_token(tmp_path, koelectra_vocab):
    with pytest.raises(UserError, match="unknown tokenizer back end 'spm'"):
        tokenization.load_tokenizer(str(koelectra_vocab), VocabSettings(), backend="spm")
    bad = tmp_path / "vocab.txt"
    bad.write_text("\n".join(t for t in koelectra_vocab.read_text().split("\n") if t != "[MASK]"))
    with pytest.raises(UserError, match=r"lacks special token\(s\) \[MASK\]"):
        tokenization.load_tokenizer(str(bad), VocabSettings())


def test_the_one_cjk_table_splits_alike_in_python_tensorflow_and_the_original():
    """Both engines' patterns come from `bert_normalizer.CJK_RANGES`; the original's
    `_is_chinese_char` decides every range edge the same way."""
    import tensorflow as tf

    sys.path.insert(0, PEER)
    try:
        from model import tokenization as original_module
    finally:
        sys.path.remove(PEER)
    edges = sorted({c for lo, hi in bert_normalizer.CJK_RANGES for c in (lo - 1, lo, hi, hi + 1)})
    original = original_module.BasicTokenizer(do_lower_case=False)
    for code in edges:
        char = chr(code)
        expected = original._is_chinese_char(code)
        assert bool(bert_normalizer.CJK_RE.fullmatch(char)) == expected, hex(code)
        spaced = tf.strings.regex_replace(char, "(" + bert_normalizer.CJK_RE2 + ")", r" \1 ").numpy().decode()
        assert (spaced == f" {char} ") == expected, hex(code)
