"""Faults and bad input on the data side (issue 22): the data stages' outputs are a function of
their inputs alone, never overwrite them, and every input is checked for what it is.

Each case asserts the exit code, the exact stderr line and what is on disk. Records built
in-process where only the bytes matter (the sharding cases); the real commands in a
subprocess where the exit code and the one line matter.
"""
import collections
import os
import pathlib
import subprocess
import sys

import pytest

from data_prep import beam_pipeline, build, clean, records, records_plan
from data_prep.filters import FilterConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENTRY = {"electra-clean": "data_prep.clean", "electra-vocab": "data_prep.vocab", "electra-build-data": "data_prep.build"}


def run(command: str, *args, env=None, cwd=None, **kw) -> subprocess.CompletedProcess:
    code = f"import {ENTRY[command]} as m; m.cli()"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, **kw)


def snapshot(folder) -> dict[str, bytes]:
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def example_multiset(directory) -> collections.Counter:
    return collections.Counter(data for path in records.list_shards(str(directory)) for data in records.iter_records(path))


# ---- (1) records are a function of the corpus, not of the sharding ---------------------------------

LONG_DOCUMENTS = 3
LONG_DOCUMENT_LINES = 300  # ~12 KB each: longer than most byte ranges below, hundreds of examples at length 64


@pytest.fixture(scope="module")
def raw_corpus(tmp_path_factory, corpus_path) -> pathlib.Path:
    """1,200 real NSMC lines (about 25 movies) and three synthetic documents far longer than a range."""
    folder = tmp_path_factory.mktemp("raw")
    real = b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:1200])
    long_docs = "\n".join(
        "\n".join(f"긴 문서 {d}의 {i}번째 문장은 다른 문장과 겹치지 않는다 {d * 1000 + i}" for i in range(LONG_DOCUMENT_LINES))
        for d in range(LONG_DOCUMENTS)).encode() + b"\n"
    (folder / "a.txt").write_bytes(real[: len(real) // 2].rsplit(b"\n\n", 1)[0] + b"\n\n" + long_docs)
    (folder / "b.txt").write_bytes(b"\n" + long_docs.replace("긴 문서".encode(), "다른 긴 문서".encode()) + b"\n"
                                   + real[len(real) // 2:].split(b"\n\n", 1)[1])
    return folder


@pytest.fixture(scope="module")
def cleaned_corpus(raw_corpus, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("clean") / "clean"
    clean.run(clean.CleanConfig(inputs=(str(raw_corpus),), output=str(out), filters=FilterConfig()))
    return out


@pytest.fixture(scope="module")
def one_shard(cleaned_corpus, tmp_path_factory, koelectra_vocab) -> collections.Counter:
    out = tmp_path_factory.mktemp("one") / "records"
    build.build(build.BuildConfig(corpus_dir=str(cleaned_corpus), vocab_file=str(koelectra_vocab), output_dir=str(out),
                                  max_seq_length=64, num_shards=1))
    examples = example_multiset(out)
    assert sum(examples.values()) > 500 and max(examples.values()) == 1  # every example is distinct
    return examples


# (num_shards, num_processes): more shards than documents; ranges far shorter than a document.
SHARDINGS = [(2, 1), (7, 1), (64, 1), (500, 1), (0, 2), (40, 3)]


@pytest.mark.parametrize("num_shards,num_processes", SHARDINGS, ids=[f"{s}shards-{p}proc" for s, p in SHARDINGS])
def test_records_are_the_same_for_every_sharding(num_shards, num_processes, cleaned_corpus, one_shard, tmp_path,
                                                 koelectra_vocab):
    out = tmp_path / "records"
    summary = build.build(build.BuildConfig(corpus_dir=str(cleaned_corpus), vocab_file=str(koelectra_vocab),
                                            output_dir=str(out), max_seq_length=64, num_shards=num_shards,
                                            num_processes=num_processes))
    assert example_multiset(out) == one_shard
    assert summary.manifest.num_examples == sum(one_shard.values())


def test_records_are_the_same_as_the_beam_pipelines(raw_corpus, one_shard, tmp_path, koelectra_vocab):
    config = beam_pipeline.BeamConfig(inputs=(str(raw_corpus),), output_dir=str(tmp_path), vocab_sample_lines=0,
                                      vocab_file=str(koelectra_vocab), max_seq_length=64, num_shards=5)
    beam_pipeline.run(config)
    assert example_multiset(tmp_path / beam_pipeline.RECORDS_DIR) == one_shard


def test_every_document_is_read_by_exactly_one_range(tmp_path):
    """The plan and `read_span` alone, for every shard count up to past the number of lines."""
    docs = [[f"doc{d} line{i}" for i in range(n)] for d, n in enumerate([1, 40, 2, 1, 25, 3])]
    text = "\n\n".join("\n".join(doc) for doc in docs) + "\n"
    path = tmp_path / "c.txt"
    path.write_text("\n\n" + text.replace("\n\n", "\n \n\n", 1))  # leading blanks, a blank-looking line
    files = records_plan.list_inputs(str(path))
    for num_shards in range(1, len(text) + 2, 7):
        read = []
        for spans in records_plan.plan_shards(files, num_shards):
            for span in spans:
                lines = collections.defaultdict(list)
                for doc, _, line in records_plan.read_span(span, blanks_separate_docs=True):
                    lines[doc].append(line)
                read += lines.values()
        assert sorted(read) == sorted(docs), num_shards


# ---- (5) an output never replaces, or sits on, its input -------------------------------------------


@pytest.fixture()
def small(tmp_path, corpus_path) -> pathlib.Path:
    """300 real lines in tmp/raw/reviews.txt and the KoELECTRA vocab copied to tmp/vocab.txt."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "reviews.txt").write_bytes(b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:300]))
    (tmp_path / "vocab.txt").write_bytes((ROOT / "data" / "vocab" / "koelectra_v1_vocab.txt").read_bytes())
    return tmp_path


OUTPUT_ON_INPUT = [  # (command, arguments, the output and the input named, how they overlap)
    ("electra-clean", ["--keep-all", "raw/reviews.txt", "raw/reviews.txt"], "raw/reviews.txt", "raw/reviews.txt", "is"),
    ("electra-clean", ["--keep-all", "raw/reviews.txt", "raw/../raw/reviews.txt"], "raw/../raw/reviews.txt",
     "raw/reviews.txt", "is"),
    ("electra-clean", ["--keep-all", "--stats-file", "raw/reviews.txt", "raw/reviews.txt", "out.txt"],
     "raw/reviews.txt", "raw/reviews.txt", "is"),
    ("electra-clean", ["--stats-file", "raw/reviews.txt", "raw", "clean"], "raw/reviews.txt", "raw", "inside"),
    ("electra-build-data", ["--corpus-dir", "raw", "--vocab-file", "vocab.txt", "--output-dir", "vocab.txt"],
     "vocab.txt", "vocab.txt", "is"),
]
LINES = {
    "is": "error: output {0} is the input {1}: writing it would replace the input; choose another output\n",
    "inside": "error: output {0} is inside the input {1}: the next run would read its own output back; choose an "
              "output folder outside the input\n",
}


@pytest.mark.parametrize("command,args,output,given,overlap", OUTPUT_ON_INPUT,
                         ids=[" ".join(c[1]) for c in OUTPUT_ON_INPUT])
def test_output_on_an_input_is_refused(command, args, output, given, overlap, small):
    before = snapshot(small)
    result = run(command, *args, cwd=small)
    assert (result.returncode, result.stderr) == (2, LINES[overlap].format(output, given))
    assert snapshot(small) == before
