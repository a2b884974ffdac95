"""The record builder end to end on real NSMC text: format, packing, determinism, resume, errors."""
import collections
import gzip
import os
import signal
import subprocess
import sys
import time

import pytest

from data_prep import build, records, records_plan, records_worker, tokenization, vocab_files
from data_prep.records_plan import BuildConfig, InputFile, Span
from conftest import ROOT
from foundation.errors import UserError
from test_packing import _made_of
from shared_paths import ORIGINAL_ELECTRA

L = 64
PEER = str(ORIGINAL_ELECTRA)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, corpus_path):
    """The first 80 movies of the bundled corpus (one movie per document, blank line between)."""
    d = tmp_path_factory.mktemp("corpus")
    docs = corpus_path.read_bytes().split(b"\n\n")[:80]
    (d / "reviews.txt").write_bytes(b"\n\n".join(docs) + b"\n")
    return d


def _build(corpus, out, vocab, **kw):
    cfg = BuildConfig(corpus_dir=str(corpus), vocab_file=str(vocab), output_dir=str(out), max_seq_length=L, **kw)
    return build.build(cfg)


def _shard_bytes(out):
    return [open(p, "rb").read() for p in records.list_shards(str(out))]


def _rows(out):
    ex = records.load_examples(str(out))
    return collections.Counter(map(tuple, ex["input_ids"].tolist()))


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus, koelectra_vocab):
    out = tmp_path_factory.mktemp("built") / "records"
    summary = _build(corpus, out, koelectra_vocab, num_shards=3, seed=5)
    return out, summary


def test_manifest_and_records_agree(built, koelectra_vocab):
    out, summary = built
    manifest = records.check_record_dir(str(out), L, str(koelectra_vocab), 32200, full=True)
    ex = records.load_examples(str(out))
    assert manifest == summary.manifest and manifest.num_shards == 3 and manifest.seed == 5
    assert ex["input_ids"].shape == (manifest.num_examples, L) and manifest.num_examples > 300
    assert [len(list(records.iter_records(p))) for p in records.list_shards(str(out))] == list(
        manifest.examples_per_shard
    )
    assert int(ex["input_mask"].sum()) == manifest.num_tokens
    assert manifest.flags["settings"] == {
        "do_lower_case": False, "strip_accents": False, "pretokenizer": "bert", "max_input_chars_per_word": 100
    }
    assert sorted(os.listdir(out)) == ["manifest.json"] + [records.shard_name(i, 3) for i in range(3)]


def test_packing_invariants_in_the_records(built, corpus, koelectra_vocab):
    out, _ = built
    tok = tokenization.load_tokenizer(str(koelectra_vocab), vocab_files.VocabSettings())
    docs = [
        tok.encode_batch([line for line in doc.split("\n") if line.strip()])
        for doc in (corpus / "reviews.txt").read_text().split("\n\n")
    ]
    ex = records.load_examples(str(out))
    singles = 0
    for ids, mask, seg in zip(ex["input_ids"].tolist(), ex["input_mask"].tolist(), ex["segment_ids"].tolist()):
        n = sum(mask)
        assert mask == [1] * n + [0] * (L - n) and ids[n:] == [0] * (L - n) and seg[n:] == [0] * (L - n)
        assert ids[0] == tok.cls_id and ids[n - 1] == tok.sep_id
        seps = [i for i in range(n) if ids[i] == tok.sep_id]
        assert len(seps) in (1, 2)
        a = ids[1 : seps[0]]
        b = ids[seps[0] + 1 : n - 1] if len(seps) == 2 else []
        singles += not b
        assert seg[:n] == [0] * (len(a) + 2) + [1] * (n - len(a) - 2)
        # A and B come from one and the same document
        assert any(_made_of(a, d) and _made_of(b, d) for d in docs)
    assert 0.1 < singles / len(ex["input_ids"]) < 0.5


def test_tokens_equal_transformers_on_the_records(built, corpus, koelectra_vocab):
    """The tokens in the records are what `transformers` gives for the same lines."""
    import transformers

    out, _ = built
    tok = transformers.BertTokenizerFast(vocab=str(koelectra_vocab), do_lower_case=False, strip_accents=False)
    first_doc = (corpus / "reviews.txt").read_text().split("\n\n")[0]
    want = [i for line in first_doc.split("\n") if line.strip() for i in tok(line, add_special_tokens=False)["input_ids"]]
    ex = records.load_examples(str(out))
    got = [i for row in ex["input_ids"].tolist() for i in row if i not in (0, 2, 3)]
    assert got[:40] == want[:40]  # shard 0 starts with the first document


def test_output_independent_of_process_count_and_split(built, tmp_path, corpus, koelectra_vocab):
    out, _ = built
    two = tmp_path / "two"
    _build(corpus, two, koelectra_vocab, num_shards=3, seed=5, num_processes=2, files_per_process=1)
    assert _shard_bytes(two) == _shard_bytes(out)
    one = tmp_path / "one"
    _build(corpus, one, koelectra_vocab, num_shards=1, seed=5)
    assert _rows(one) == _rows(out)  # documents never split: any shard count, same examples
    other_seed = tmp_path / "seed"
    _build(corpus, other_seed, koelectra_vocab, num_shards=1, seed=6)
    assert _rows(other_seed) != _rows(one)


def test_gz_input_gives_the_same_shards(tmp_path, corpus, koelectra_vocab):
    gz = tmp_path / "gz"
    gz.mkdir()
    (gz / "reviews.txt.gz").write_bytes(gzip.compress((corpus / "reviews.txt").read_bytes()))
    _build(gz, tmp_path / "a", koelectra_vocab, num_shards=1)
    _build(corpus, tmp_path / "b", koelectra_vocab, num_shards=1)
    assert _shard_bytes(tmp_path / "a") == _shard_bytes(tmp_path / "b")


def test_blanks_separate_docs_false_makes_each_file_one_document(tmp_path, corpus, koelectra_vocab):
    joined = _build(corpus, tmp_path / "joined", koelectra_vocab, num_shards=1, blanks_separate_docs=False)
    split = _build(corpus, tmp_path / "split", koelectra_vocab, num_shards=1)
    # fewer document ends, fewer short examples; the tokens lost to trimming differ a little
    assert joined.manifest.num_examples < split.manifest.num_examples
    assert abs(joined.manifest.num_tokens - split.manifest.num_tokens) < 0.1 * split.manifest.num_tokens


def _cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "build_pretraining_dataset.py", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_kill_9_and_rerun_gives_identical_shards(tmp_path, corpus_path, koelectra_vocab):
    args = ["--corpus-dir", str(corpus_path), "--vocab-file", str(koelectra_vocab), "--max-seq-length", "128",
            "--num-shards", "8"]
    out = tmp_path / "killed"
    proc = _cli(*args, "--output-dir", str(out))
    # a shard counts as finished once its stats file follows the renamed shard; a kill between
    # the two leaves a shard that the rerun must rebuild, so wait for the stats file
    def finished() -> int:
        return sum((out / records.shard_name(i, 8)).exists() and os.path.exists(records_worker.stats_path(str(out), i, 8))
                   for i in range(8))

    deadline = time.monotonic() + 120
    while not finished() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / records.MANIFEST).exists()
    kept = finished()
    assert 1 <= kept < 8
    rerun = _cli(*args, "--output-dir", str(out))
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"(kept {kept} finished shards)" in stdout
    clean = tmp_path / "clean"
    build.build(BuildConfig(str(corpus_path), str(koelectra_vocab), str(clean), max_seq_length=128, num_shards=8))
    assert _shard_bytes(out) == _shard_bytes(clean)
    assert records.read_manifest(str(out)).examples_per_shard == records.read_manifest(str(clean)).examples_per_shard
    assert not [p for p in os.listdir(out) if ".tmp-" in p or p == records_worker.STATE_DIR]


def test_original_tool_and_ours_read_by_the_same_reader(tmp_path, corpus, koelectra_vocab, built):
    """The peer's shards (1,000 files, no manifest) and ours parse with `records`; token counts agree."""
    import tensorflow as tf

    orig = tmp_path / "orig"
    env = dict(os.environ, PYTHONPATH=PEER, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(
        [sys.executable, os.path.join(PEER, "build_pretraining_dataset.py"), "--corpus-dir", str(corpus),
         "--vocab-file", str(koelectra_vocab), "--output-dir", str(orig), "--max-seq-length", str(L),
         "--no-lower-case", "--no-strip-accents"],
        check=True, env=env, capture_output=True,
    )
    ours, _ = built
    assert records.check_record_dir(str(orig), L, vocab_size=32200, full=True) is None
    counts = {}
    for name, d in (("orig", orig), ("ours", ours)):
        ds = tf.data.TFRecordDataset(records.list_shards(str(d))).batch(64).map(lambda s: records.parse_example(s, L))
        masks = [b["input_mask"].numpy() for b in ds]
        counts[name] = (sum(m.shape[0] for m in masks), sum(int(m.sum()) for m in masks))
    (n_orig, tok_orig), (n_ours, tok_ours) = counts["orig"], counts["ours"]
    assert abs(n_ours - n_orig) <= 0.05 * n_orig
    assert abs(tok_ours - tok_orig) <= 0.02 * tok_orig


def test_rerun_of_a_finished_build_is_a_no_op(built, corpus, koelectra_vocab):
    out, summary = built
    before = _shard_bytes(out)
    again = _build(corpus, out, koelectra_vocab, num_shards=3, seed=5)
    assert again.manifest == summary.manifest and _shard_bytes(out) == before
    assert again.up_to_date and again.kept_shards == 0


def test_refuses_records_from_other_settings_unless_overwrite(built, tmp_path, corpus, koelectra_vocab):
    out, _ = built
    with pytest.raises(UserError, match=r"holds records built with other settings \(seed: 5 -> 6\).*--overwrite"):
        _build(corpus, out, koelectra_vocab, num_shards=3, seed=6)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / records.shard_name(0, 1000)).write_bytes(b"")
    with pytest.raises(UserError, match="already holds pretrain_data.tfrecord files from another run"):
        _build(corpus, foreign, koelectra_vocab, num_shards=2)
    summary = _build(corpus, foreign, koelectra_vocab, num_shards=2, overwrite=True)
    assert len(records.list_shards(str(foreign))) == 2 == summary.manifest.num_shards


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty corpus: no text in"),
        (b"\n  \n\n", "empty corpus: no text lines in"),
        (b"\xff\xfe bad\n", r"reviews.txt:1: not UTF-8 text"),
    ],
)
def test_bad_corpus(tmp_path, koelectra_vocab, content, message):
    (tmp_path / "reviews.txt").write_bytes(content)
    with pytest.raises(UserError, match=message):
        _build(tmp_path / "reviews.txt", tmp_path / "out", koelectra_vocab)


def test_bad_inputs(tmp_path, corpus, koelectra_vocab):
    (tmp_path / "broken.txt.gz").write_bytes(gzip.compress("좋아요\n".encode() * 1000)[:-20])
    with pytest.raises(UserError, match="unreadable file .*broken.txt.gz"):
        _build(tmp_path / "broken.txt.gz", tmp_path / "out1", koelectra_vocab)
    data = bytearray(gzip.compress("좋아요 정말\n".encode() * 5000))
    data[len(data) // 2 : len(data) // 2 + 8] = b"\x00" * 8  # damaged deflate stream: zlib.error
    (tmp_path / "damaged.txt.gz").write_bytes(bytes(data))
    with pytest.raises(UserError, match="unreadable file .*damaged.txt.gz"):
        _build(tmp_path / "damaged.txt.gz", tmp_path / "out1b", koelectra_vocab)
    with pytest.raises(UserError, match="input not found"):
        _build(tmp_path / "missing", tmp_path / "out2", koelectra_vocab)
    bad_vocab = tmp_path / "vocab.txt"
    bad_vocab.write_text("\n".join(t for t in koelectra_vocab.read_text().split("\n") if t != "[SEP]"))
    with pytest.raises(UserError, match=r"lacks special token\(s\) \[SEP\]"):
        _build(corpus, tmp_path / "out3", bad_vocab)
    with pytest.raises(UserError, match="--max-seq-length must be >= 8, got 7"):
        BuildConfig(str(corpus), str(koelectra_vocab), str(tmp_path), max_seq_length=7)
    with pytest.raises(UserError, match="unknown build setting"):
        BuildConfig.from_dict({"corpus_dir": "c", "vocab_file": "v", "output_dir": "o", "shards": 3})


def test_cli_error_is_one_line_and_exit_code_2(tmp_path, corpus, koelectra_vocab):
    proc = _cli("--corpus-dir", str(corpus), "--vocab-file", str(koelectra_vocab), "--output-dir", str(tmp_path),
                "--max-seq-length", "4", "--blanks-separate-docs", "false")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and stderr.strip() == "error: --max-seq-length must be >= 8, got 4"
    assert build.parse_flags(
        ["--corpus-dir", "c", "--vocab-file", "v", "--output-dir", "o", "--blanks-separate-docs", "False",
         "--do-lower-case", "--no-strip-accents", "--num-shards", "4", "--tokenizer", "tf_text"]
    ) == BuildConfig("c", "v", "o", blanks_separate_docs=False, do_lower_case=True, strip_accents=False,
                     num_shards=4, tokenizer="tf_text")


def test_plan_shards_by_weight():
    files = [InputFile("a.txt", 100, True), InputFile("b.gz", 30, False), InputFile("c.txt", 50, True)]
    # weights 100, 90 (gz x3), 50 = 240; bounds 0, 60, 120, 180, 240
    # weights 100, 90 (gz: 30 x 3), 50; bounds 0, 60, 120, 180, 240; b.gz's middle 145 is in range 2
    assert records_plan.plan_shards(files, 4) == [
        [Span("a.txt", 0, 60)],
        [Span("a.txt", 60, None)],
        [Span("b.gz", 0, None)],
        [Span("c.txt", 0, None)],
    ]
    assert records_plan.plan_shards(files, 1) == [[Span("a.txt", 0, None), Span("b.gz", 0, None), Span("c.txt", 0, None)]]
    assert records_plan.auto_num_shards(10 << 20, 1) == 1 and records_plan.auto_num_shards(10 << 20, 4) == 4
    assert records_plan.auto_num_shards(1 << 40, 1) == 1000


TEXT = "머리 줄\n첫 문서 둘째 줄\n\n   \n둘째 문서\n셋째 줄이 조금 길다\n\n\n셋째 문서 하나\n  \n넷째 문서\n끝\n".encode()


@pytest.mark.parametrize("blanks", [True, False])
def test_read_span_every_cut_reads_each_line_once(tmp_path, blanks):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT)

    def docs(start, end):
        out = collections.OrderedDict()
        for doc, first, text in records_plan.read_span(Span(str(path), start, end), blanks):
            out.setdefault((start, doc, first), []).append(text)
        return list(out.values())

    whole = docs(0, None)
    assert len(whole) == (4 if blanks else 1)
    for cut in range(1, len(TEXT)):
        parts = docs(0, cut) + docs(cut, None)
        if blanks:
            assert parts == whole, cut  # documents are never split
        else:
            assert [line for d in parts for line in d] == whole[0], cut


def test_directory_of_files_cut_anywhere_gives_the_same_examples(tmp_path, corpus, koelectra_vocab):
    """Three files (one .gz) in a directory: 7 ranges cut inside files give the examples of 1 range."""
    docs = (corpus / "reviews.txt").read_bytes().split(b"\n\n")
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"\n\n".join(docs[:30]) + b"\n")
    (d / "sub" / "b.txt.gz").write_bytes(gzip.compress(b"\n\n".join(docs[30:50]) + b"\n"))
    (d / "c.txt").write_bytes(b"\n\n".join(docs[50:]))  # no final newline
    (d / "notes.md").write_bytes(b"not read")
    seven = _build(d, tmp_path / "seven", koelectra_vocab, num_shards=7)
    one = _build(d, tmp_path / "one", koelectra_vocab, num_shards=1)
    assert _rows(tmp_path / "seven") == _rows(tmp_path / "one")
    assert seven.manifest.num_tokens == one.manifest.num_tokens
    assert sum(1 for n in seven.manifest.examples_per_shard if n) >= 5
    assert [p for p, _ in seven.manifest.flags["inputs"]] == [str(d / "a.txt"), str(d / "c.txt"), str(d / "sub" / "b.txt.gz")]
