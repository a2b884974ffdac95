"""The Beam pipeline (DirectRunner) against the single-machine tools on real NSMC text.

Same cleaner statistics, same example multiset, same manifest counts; plus near-dedupe,
the vocab sample and the command line. A slice of the corpus keeps the DirectRunner fast.
"""
import collections
import dataclasses
import json
from typing import NamedTuple

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from data_prep import beam_pipeline, beam_clean, beam_records, build, clean, minhash, records, vocab_train
from data_prep.normalize import clean_line
from foundation.errors import run_cli
from data_prep.filters import CleanStats, FilterConfig

SLICE_LINES = 2500
FILTERS = FilterConfig(min_line_chars=10, min_document_lines=3)  # 3: the document filter bites too


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory, corpus_path):
    """Two input files cut from the real corpus, with a cross-file duplicate and a bad byte."""
    lines = corpus_path.read_bytes().split(b"\n")[:SLICE_LINES]
    d = tmp_path_factory.mktemp("raw")
    half = SLICE_LINES // 2
    (d / "a.txt").write_bytes(b"\n".join(lines[:half]) + b"\n")
    second = [lines[5], b"\xff\xfe broken bytes in a review line", *lines[half:]]  # lines[5] repeats file a
    (d / "b.txt").write_bytes(b"\n".join(second))  # no final newline
    return d


class Local(NamedTuple):
    stats: CleanStats
    manifest: records.Manifest
    records_dir: str


@pytest.fixture(scope="module")
def local_run(raw_dir, tmp_path_factory, koelectra_vocab):
    """electra-clean then electra-build-data, as a user runs them on one machine."""
    out = tmp_path_factory.mktemp("local")
    stats = clean.run(clean.CleanConfig(inputs=(str(raw_dir),), output=str(out / "clean"), filters=FILTERS))
    summary = build.build(build.BuildConfig(corpus_dir=str(out / "clean"), vocab_file=str(koelectra_vocab),
                                            output_dir=str(out / "records"), num_shards=2))
    return Local(stats, summary.manifest, str(out / "records"))


@pytest.fixture(scope="module")
def beam_run(raw_dir, tmp_path_factory, koelectra_vocab):
    out = tmp_path_factory.mktemp("beam")
    config = beam_pipeline.BeamConfig(inputs=(str(raw_dir),), output_dir=str(out), filters=FILTERS,
                                      vocab_sample_lines=300, vocab_file=str(koelectra_vocab), num_shards=3)
    return config, beam_pipeline.run(config)


def example_multiset(directory) -> collections.Counter:
    return collections.Counter(data for path in records.list_shards(str(directory)) for data in records.iter_records(path))


def test_same_statistics_as_the_local_cleaner(beam_run, local_run, raw_dir):
    config, summary = beam_run
    assert summary.stats.to_dict() == local_run.stats.to_dict()
    s = summary.stats
    assert s.files == 2 and s.dropped["duplicate"] >= 1 and s.non_utf8_lines == 1
    assert s.non_utf8_locations == [f"{raw_dir}/b.txt:2"]
    assert s.documents_dropped > 0 and s.dropped["short_document"] > 0
    assert s.lines_in == s.lines_out + sum(s.dropped.values())
    saved = json.loads(open(f"{config.output_dir}/{beam_pipeline.STATS_FILE}", encoding="utf-8").read())
    assert saved == local_run.stats.to_dict()


def test_same_examples_and_manifest_counts_as_the_local_builder(beam_run, local_run):
    config, summary = beam_run
    beam_dir = f"{config.output_dir}/{beam_pipeline.RECORDS_DIR}"
    m, lm = summary.manifest, local_run.manifest
    assert m == records.read_manifest(beam_dir)
    assert m.num_examples == lm.num_examples > 100
    assert m.num_tokens == lm.num_tokens
    assert m.cut_tokens == lm.cut_tokens > 0
    assert (m.vocab_sha256, m.vocab_size, m.max_seq_length, m.seed) == (
        lm.vocab_sha256, lm.vocab_size, lm.max_seq_length, lm.seed)
    assert m.num_shards == 3 and lm.num_shards == 2  # shard counts differ, contents do not
    beam_examples = example_multiset(beam_dir)
    assert beam_examples == example_multiset(local_run.records_dir)
    assert [sum(1 for _ in records.iter_records(p)) for p in records.list_shards(beam_dir)] == list(m.examples_per_shard)
    records.check_record_dir(beam_dir, full=True)


def test_output_does_not_depend_on_beam_parallelism_or_shard_count(beam_run, tmp_path, koelectra_vocab):
    config, _ = beam_run
    again = beam_pipeline.BeamConfig(inputs=config.inputs, output_dir=str(tmp_path), filters=FILTERS,
                                     vocab_sample_lines=0, vocab_file=str(koelectra_vocab), num_shards=1)
    options = PipelineOptions(["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"])
    summary = beam_pipeline.run(again, options)
    assert summary.coverage is None and not (tmp_path / beam_pipeline.SAMPLE_DIR).exists()
    assert summary.vocab_file == str(koelectra_vocab)
    assert example_multiset(tmp_path / beam_pipeline.RECORDS_DIR) == example_multiset(
        f"{config.output_dir}/{beam_pipeline.RECORDS_DIR}")


def test_vocab_sample_is_a_seeded_uniform_sample_with_its_coverage(beam_run, local_run):
    config, summary = beam_run
    sample_dir = f"{config.output_dir}/{beam_pipeline.SAMPLE_DIR}"
    sample = open(f"{sample_dir}/{beam_records.SAMPLE_FILE}", encoding="utf-8").read().split("\n")[:-1]
    # The cleaned corpus the local cleaner wrote holds exactly the lines the pipeline sampled from.
    cleaned_dir = local_run.records_dir.replace("records", "clean")
    corpus = [line for p in clean.fileio.list_text_files(cleaned_dir)
              for line in open(p, encoding="utf-8").read().split("\n") if line]
    assert len(sample) == 300 == len(set(sample)) and set(sample) <= set(corpus)
    assert sample == sorted(corpus, key=lambda t: beam_records.sample_rank(t, config.seed))[:300]
    chars = collections.Counter()
    for line in corpus:
        chars.update(line)
    expected = beam_records.sample_coverage(sample, chars, len(corpus))
    assert summary.coverage == json.loads(json.dumps(expected, ensure_ascii=False))
    assert summary.coverage["corpus_lines"] == summary.stats.lines_out
    assert 0.9 < summary.coverage["char_coverage"] < 1.0  # rare characters are missing from 300 lines
    assert summary.coverage["distinct_chars_sample"] < summary.coverage["distinct_chars_corpus"]


def test_near_dedupe_drops_constructed_near_duplicates(tmp_path, corpus_path, koelectra_vocab):
    """Edited copies of long reviews are removed; the pipeline agrees with `minhash` on one machine."""
    lines = [raw.decode("utf-8") for raw in corpus_path.read_bytes().split(b"\n")[:600]]
    long = [line.strip() for line in lines if len(line.strip()) >= 100][:6]
    copies = [text[:50] + "!" + text[51:] for text in long[:3]] + [text + " ㅋㅋ" for text in long[3:]]
    (tmp_path / "raw.txt").write_text("\n".join(lines + [""] + copies) + "\n", encoding="utf-8")
    config = beam_pipeline.BeamConfig(inputs=(str(tmp_path / "raw.txt"),), output_dir=str(tmp_path / "out"),
                                      near_dedupe=True, vocab_sample_lines=10_000, vocab_file=str(koelectra_vocab))
    summary = beam_pipeline.run(config)
    assert summary.stats.dropped[beam_clean.NEAR_DUPLICATE] >= len(copies)
    kept = set(open(tmp_path / "out" / beam_pipeline.SAMPLE_DIR / beam_records.SAMPLE_FILE, encoding="utf-8")
               .read().split("\n"))
    cleaned = [clean_line(text, config.preset) for text in long + copies]
    assert not kept & set(cleaned[len(long):]) and set(cleaned[:len(long)]) <= kept
    # The same rule on one machine, over the lines that survived exact dedupe, removes the same lines.
    plain = dataclasses.replace(config, output_dir=str(tmp_path / "plain"), near_dedupe=False)
    beam_pipeline.run(plain)
    survivors = open(tmp_path / "plain" / beam_pipeline.SAMPLE_DIR / beam_records.SAMPLE_FILE,
                     encoding="utf-8").read().split("\n")[:-1]
    order: dict[str, int] = {}
    for i, raw in enumerate(lines + [""] + copies):
        order.setdefault(clean_line(raw, config.preset), i)
    removed = minhash.find_near_duplicates(((order[t], t) for t in survivors), config.near)
    assert {t for t in survivors if order[t] in removed} == set(survivors) - kept
    assert summary.stats.dropped[beam_clean.NEAR_DUPLICATE] == len(removed)


def test_cli_rejects_unknown_flags(tmp_path, raw_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda: beam_pipeline.main(["--input", str(raw_dir), "--output-dir", str(tmp_path),
                                            "--runner", "DirectRunner", "--nmu_workers", "1"]))
    assert exc.value.code == 2
    assert "error: unknown flag(s): --nmu_workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(lambda: beam_pipeline.main(["--input", str(raw_dir), "--output-dir", str(tmp_path),
                                            "--vocab-sample-lines", "0"]))
    assert "--vocab-sample-lines must be > 0" in capsys.readouterr().err


def test_cli_without_vocab_builds_it_from_the_sample(tmp_path, raw_dir, capsys):
    """One pipeline does it all: the vocab is `electra-vocab` on the sample, the records use it."""
    out = tmp_path / "out"
    code = beam_pipeline.main(["--input", str(raw_dir / "a.txt"), "--output-dir", str(out), "--runner", "DirectRunner",
                               "--vocab-sample-lines", "400", "--vocab-size", "600", "--merge-with", "none",
                               "--max-seq-length", "64"])
    printed = capsys.readouterr().out
    assert code == 0 and "vocab sample: 400 of" in printed and "built from the sample" in printed
    sample = out / beam_pipeline.SAMPLE_DIR / beam_records.SAMPLE_FILE
    vocab_train.run(vocab_train.VocabConfig(inputs=(str(sample),), output=str(tmp_path / "by_hand"), vocab_size=600,
                                merge_with=None))
    built = (out / beam_pipeline.VOCAB_DIR / "vocab.txt").read_text(encoding="utf-8")
    # The same tokens (electra-vocab's order of equal-count tokens varies from run to run).
    assert sorted(built.split("\n")) == sorted((tmp_path / "by_hand" / "vocab.txt").read_text(encoding="utf-8").split("\n"))
    manifest = records.check_record_dir(str(out / beam_pipeline.RECORDS_DIR), 64,
                                        str(out / beam_pipeline.VOCAB_DIR / "vocab.txt"))
    assert manifest.vocab_size == len(built.split("\n")) - 1 and manifest.num_examples > 10


def test_standard_beam_options_pass_through_for_dataflow(raw_dir):
    """The documented Dataflow invocation parses: our flags to the config, the rest to Beam."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, StandardOptions, WorkerOptions

    config, options = beam_pipeline.parse_args([
        "--input", str(raw_dir), "--output-dir", "gs://bucket/prep", "--vocab-file", "gs://bucket/vocab.txt",
        "--near-dedupe", "--num-shards", "256", "--runner", "DataflowRunner", "--project", "my-project",
        "--region", "europe-west4", "--temp_location", "gs://bucket/tmp", "--num_workers", "10",
        "--setup_file", "./setup.py"])
    assert (config.output_dir, config.vocab_file, config.near_dedupe, config.num_shards) == (
        "gs://bucket/prep", "gs://bucket/vocab.txt", True, 256)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("my-project", "europe-west4", "gs://bucket/tmp")
    assert options.view_as(WorkerOptions).num_workers == 10
    assert options.view_as(SetupOptions).setup_file == "./setup.py"
