"""Faults and bad input on the data side (issue 22): the data stages' outputs are a function of
their inputs alone, never overwrite them, and every input is checked for what it is.

Each case asserts the exit code, the exact stderr line and what is on disk. Records built
in-process where only the bytes matter (the sharding cases); the real commands in a
subprocess where the exit code and the one line matter.
"""
import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any, NamedTuple

import pytest

from data_prep import beam_pipeline, build, clean, records, records_plan
from data_prep.filters import FilterConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENTRY = {"electra-clean": "data_prep.clean", "electra-vocab": "data_prep.vocab",
         "electra-build-data": "data_prep.build"}


def run(command: str, *args, env=None, cwd=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    code = f"import {ENTRY[command]} as m; m.cli()"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kw)


def snapshot(folder) -> dict[str, bytes]:
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def example_multiset(directory) -> collections.Counter:
    return collections.Counter(data for path in records.list_shards(str(directory))
                               for data in records.iter_records(path))


# ---- (1) records are a function of the corpus, not of the sharding ---------------------------------

LONG_DOCUMENTS = 3
LONG_DOCUMENT_LINES = 300  # ~12 KB each: longer than most byte ranges below, hundreds of examples at length 64


@pytest.fixture(scope="module")
def raw_corpus(tmp_path_factory, corpus_path) -> pathlib.Path:
    """1,200 real NSMC lines (about 25 movies) and three synthetic documents far longer than a range."""
    folder = tmp_path_factory.mktemp("raw")
    real = b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:1200])
    long_docs = "\n\n".join(
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


class Reference(NamedTuple):
    examples: collections.Counter  # the serialised examples of the one-shard build
    cut_tokens: int  # the tokens packing trimmed: a function of the corpus too


@pytest.fixture(scope="module")
def one_shard(cleaned_corpus, tmp_path_factory, koelectra_vocab) -> Reference:
    out = tmp_path_factory.mktemp("one") / "records"
    summary = build.build(build.BuildConfig(corpus_dir=str(cleaned_corpus), vocab_file=str(koelectra_vocab),
                                            output_dir=str(out), max_seq_length=64, num_shards=1))
    examples = example_multiset(out)
    assert sum(examples.values()) > 500 and max(examples.values()) == 1  # every example is distinct
    assert summary.manifest.cut_tokens > 0
    return Reference(examples, summary.manifest.cut_tokens)


# (num_shards, num_processes): more shards than documents; ranges far shorter than a document;
# 1,000 processes (so 1,000 shards by default), which the pool caps at the CPUs with a warning.
SHARDINGS = [(2, 1), (7, 1), (64, 1), (500, 1), (0, 2), (40, 3), (0, 1000)]


@pytest.mark.parametrize("num_shards,num_processes", SHARDINGS, ids=[f"{s}shards-{p}proc" for s, p in SHARDINGS])
def test_records_are_the_same_for_every_sharding(num_shards, num_processes, cleaned_corpus, one_shard, tmp_path,
                                                 koelectra_vocab, capsys):
    out = tmp_path / "records"
    summary = build.build(build.BuildConfig(corpus_dir=str(cleaned_corpus), vocab_file=str(koelectra_vocab),
                                            output_dir=str(out), max_seq_length=64, num_shards=num_shards,
                                            num_processes=num_processes))
    assert example_multiset(out) == one_shard.examples
    assert summary.manifest.num_examples == sum(one_shard.examples.values())
    assert summary.manifest.cut_tokens == one_shard.cut_tokens
    assert summary.manifest.num_shards == (num_shards or num_processes)
    cpus = os.cpu_count()
    assert capsys.readouterr().err == (
        f"warning: --num-processes {num_processes} is more than the {cpus} CPUs here: using {cpus} (the records are "
        "the same for any number)\n" if num_processes > cpus else "")


def test_records_are_the_same_as_the_beam_pipelines(raw_corpus, one_shard, tmp_path, koelectra_vocab):
    config = beam_pipeline.BeamConfig(inputs=(str(raw_corpus),), output_dir=str(tmp_path), vocab_sample_lines=0,
                                      vocab_file=str(koelectra_vocab), max_seq_length=64, num_shards=5)
    summary = beam_pipeline.run(config)
    assert example_multiset(tmp_path / beam_pipeline.RECORDS_DIR) == one_shard.examples
    assert summary.manifest.cut_tokens == one_shard.cut_tokens


def test_every_document_is_read_by_exactly_one_range(tmp_path):
    """The plan and `read_span` alone, for every shard count up to past the number of lines."""
    docs = [[f"doc{d} line{i}" for i in range(n)] for d, n in enumerate([1, 40, 2, 1, 25, 3])]
    text = "\n\n".join("\n".join(doc) for doc in docs) + "\n"
    path = tmp_path / "c.txt"
    path.write_text("\n\n" + text.replace("\n\n", "\n \n\n", 1))  # leading blanks, a blank-looking line
    files = records_plan.list_inputs(str(path))
    for num_shards in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, len(text) // 2, len(text) + 1):
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


@pytest.mark.parametrize("redirect", ["stdin", "stdout"])
def test_keep_all_through_a_redirect_onto_its_input_is_refused(redirect, small):
    """`electra-clean --keep-all - in.txt < in.txt` and `... in.txt - >> in.txt`: the shell names the file."""
    path = small / "raw" / "reviews.txt"
    before = path.read_bytes()
    with open(path, "rb" if redirect == "stdin" else "ab") as fh:
        if redirect == "stdin":
            result = run("electra-clean", "--keep-all", "-", "raw/reviews.txt", cwd=small, stdin=fh)
            line = ("error: output raw/reviews.txt is the input (stdin reads it): writing it would replace the input; "
                    "choose another output\n")
        else:
            result = subprocess.run([sys.executable, "-c", f"import {ENTRY['electra-clean']} as m; m.cli()",
                                     "--keep-all", "raw/reviews.txt", "-"], cwd=small, stdout=fh,
                                    stderr=subprocess.PIPE, text=True, timeout=60,
                                    env=dict(os.environ, PYTHONPATH=str(ROOT)))
            line = ("error: output (stdout) is the input raw/reviews.txt: it would read its own output; choose another "
                    "output\n")
    assert (result.returncode, result.stderr) == (2, line)
    assert path.read_bytes() == before


# ---- (6) inputs are checked for what they are before any work -------------------------------------

KOELECTRA = ROOT / "data" / "vocab" / "koelectra_v1_vocab.txt"
COMMANDS = {  # each data stage reading the corpus folder tmp/corpus into tmp/out
    "electra-clean": ["corpus", "out"],
    "electra-vocab": ["--merge-with", "none", "--vocab-size", "300", "corpus", "out"],
    "electra-build-data": ["--corpus-dir", "corpus", "--vocab-file", "vocab.txt", "--output-dir", "out",
                           "--max-seq-length", "64"],
}


def _not_regular(folder: pathlib.Path, kind: str) -> str:
    """Put a corpus entry of `kind` into `folder`; the words the error line uses for it."""
    if kind == "dangling symlink":
        (folder / "b.txt").symlink_to("gone.txt")
        return "b.txt is a dangling symlink (to gone.txt): fix or remove it"
    if kind == "symlink loop":
        (folder / "b.txt").symlink_to("b.txt")
        return "b.txt is a symlink loop: fix or remove it"
    os.mkfifo(folder / "b.txt")
    return "b.txt is a named pipe: only regular files are read"


# Each kind in another stage (they share the listing, `fileio.list_text_files`).
NOT_REGULAR = [("electra-clean", "named pipe"), ("electra-vocab", "symlink loop"),
               ("electra-build-data", "dangling symlink")]


@pytest.mark.parametrize("command,kind", NOT_REGULAR, ids=[f"{c}-{k}" for c, k in NOT_REGULAR])
def test_corpus_entry_that_is_not_a_regular_file_is_one_line(command, kind, small):
    (small / "raw").rename(small / "corpus")
    words = _not_regular(small / "corpus", kind)
    (small / "corpus" / "c.txt").symlink_to("reviews.txt")  # a link to a regular file is read
    before = snapshot(small)
    result = run(command, *COMMANDS[command], cwd=small, timeout=60)  # a pipe read would block: the timeout fails
    assert (result.returncode, result.stderr) == (2, f"error: corpus entry corpus/{words}\n")
    assert snapshot(small) == before and not (small / "out").exists()


def test_symlinked_folders_are_searched_each_real_folder_once(small):
    from foundation import fileio

    corpus = small / "corpus"
    (corpus / "sub").mkdir(parents=True)
    for name in ("link", "link-again"):  # two links to one folder: read once
        (corpus / name).symlink_to(small / "raw")
    (corpus / "sub" / "up").symlink_to(corpus)  # a loop: ends there
    (corpus / "sub" / "a.txt").write_text("한 줄\n")
    assert fileio.list_text_files(str(corpus)) == [str(corpus / "link" / "reviews.txt"), str(corpus / "sub" / "a.txt")]


def test_files_a_stage_wrote_inside_the_corpus_are_skipped_with_a_warning(small):
    corpus = small / "corpus"
    (small / "raw").rename(corpus)
    (corpus / "vocab").mkdir()  # an electra-vocab output and an electra-beam vocab sample inside the corpus
    (corpus / "vocab" / "vocab.txt").write_bytes(KOELECTRA.read_bytes())
    (corpus / "vocab" / "vocab_settings.json").write_text("{}\n")
    (corpus / "sample").mkdir()
    (corpus / "sample" / "sample.txt").write_bytes((corpus / "reviews.txt").read_bytes())
    (corpus / "sample" / "merge_vocab.txt").write_bytes(KOELECTRA.read_bytes())
    (corpus / "sample" / "sample_stats.json").write_text("{}\n")
    warnings = "".join(f"warning: skipping corpus/{p}: a file a stage wrote ({p.split('/')[1]}), not corpus text\n"
                       for p in ("sample/merge_vocab.txt", "sample/sample.txt", "vocab/vocab.txt"))
    result = run("electra-build-data", *COMMANDS["electra-build-data"], cwd=small)
    assert (result.returncode, result.stderr) == (0, warnings)
    alone = run("electra-build-data", "--corpus-dir", "corpus/reviews.txt", "--vocab-file", "vocab.txt",
                "--output-dir", "alone", "--max-seq-length", "64", cwd=small)
    assert alone.returncode == 0
    assert records.read_manifest(str(small / "out")).flags["inputs"] == [
        ["corpus/reviews.txt", (corpus / "reviews.txt").stat().st_size]]
    assert example_multiset(small / "out") == example_multiset(small / "alone")
    cleaned = run("electra-clean", "corpus", "clean", cwd=small)
    assert cleaned.returncode == 0 and cleaned.stderr.startswith(warnings)
    assert '"files": 1,' in (small / "clean" / "clean_stats.json").read_text()


def test_records_lower_cased_against_a_cased_vocab_export_a_lower_casing_tokenizer(small, tmp_path):
    """The README: the exported tokenizer splits exactly as the records were built."""
    from data_prep import vocab_files
    from pretrain.conversion import export
    from pretrain.training import checkpoints
    from rtd_helpers import tiny_config

    (small / "vocab_settings.json").write_text(vocab_files.VocabSettings().to_json())  # the vocab is cased
    result = run("electra-build-data", "--corpus-dir", "raw", "--vocab-file", "vocab.txt", "--output-dir", "out",
                 "--max-seq-length", "64", "--do-lower-case", cwd=small)
    assert (result.returncode, result.stderr) == (0, (
        "warning: do_lower_case=True contradicts vocab_settings.json beside vocab.txt (do_lower_case=False); using "
        "True, recorded in the manifest (a model trained on these records exports a tokenizer that splits as they "
        "were built)\n"))
    manifest = records.read_manifest(str(small / "out"))
    assert manifest.flags["settings"]["do_lower_case"] is True
    model_dir = tmp_path / "model"
    checkpoints.write_run_files(str(model_dir), tiny_config(), str(small / "vocab.txt"), manifest)
    settings = vocab_files.load_settings(str(model_dir / "vocab.txt"))
    assert settings == vocab_files.VocabSettings(do_lower_case=True)
    tokens = vocab_files.load_vocab(str(model_dir / "vocab.txt"))
    files = export.tokenizer_files(tokens, settings, 64)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(files["tokenizer.json"])
    assert tokenizer.encode("ELECTRA Movie").tokens == tokenizer.encode("electra movie").tokens


LONG_LINE_BYTES = 50 << 20  # a 50 MB line without a newline, as a broken dump has


@pytest.fixture()
def long_line(small) -> pathlib.Path:
    corpus = small / "corpus"
    (small / "raw").rename(corpus)
    head = (corpus / "reviews.txt").read_bytes()
    with open(corpus / "reviews.txt", "ab") as fh:
        fh.write(b"\n" + "가나다 라마 ".encode() * (LONG_LINE_BYTES // 16) + b"\n\nafter the long line, one more review\n")
    return head.count(b"\n") + 2  # the long line's number


def run_measured(command, *args, cwd) -> tuple[subprocess.CompletedProcess, int]:
    """Run a stage; also its peak memory (KiB: the process's own VmHWM; ru_maxrss would count the parent's
    memory at the fork)."""
    code = (f"import atexit; atexit.register(lambda: open('maxrss', 'w').write(next(line.split()[1] for line in "
            f"open('/proc/self/status') if line.startswith('VmHWM')))); import {ENTRY[command]} as m; m.cli()")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                            text=True, timeout=120)
    return result, int((pathlib.Path(cwd) / "maxrss").read_text())


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory read from /proc")
@pytest.mark.parametrize("command", list(COMMANDS) + ["electra-clean --keep-all"])
def test_a_line_longer_than_the_limit_is_dropped_and_counted_or_reported(command, small, long_line):
    """electra-clean drops it (too_long) and keeps the rest; the others name it; never 50 MB in memory."""
    if command == "electra-clean":
        result, kib = run_measured(command, *COMMANDS[command], cwd=small)
        assert (result.returncode, result.stderr.splitlines()[0]) == (
            0, "warning: dropped 1 line(s) longer than 1,048,576 bytes (too_long in the statistics)")
        stats = json.loads((small / "out" / "clean_stats.json").read_text())
        assert stats["dropped"]["too_long"] == 1 and stats["non_utf8_lines"] == 0
        text = (small / "out" / "cleaned-00000-of-00001.txt").read_text()
        assert "가나다" not in text and text.endswith("after the long line, one more review\n")
    else:
        args = ["--keep-all", "corpus/reviews.txt", "out.txt"] if "keep-all" in command else COMMANDS[command]
        result, kib = run_measured(command.split()[0], *args, cwd=small)
        assert (result.returncode, result.stderr) == (
            2, f"error: corpus/reviews.txt:{long_line}: line longer than 1,048,576 bytes; split it into lines "
               "(electra-clean drops such lines and counts them as too_long)\n")
        assert not (small / "out").exists() and not (small / "out.txt").exists()
    assert kib < 150 << 10  # the stage's libraries and one bounded line, not the 50 MB line (5 GB before)


# ---- (9) smaller ones --------------------------------------------------------------------------------


def test_a_vocab_with_a_byte_order_mark_is_named(small):
    (small / "vocab.txt").write_bytes(b"\xef\xbb\xbf" + KOELECTRA.read_bytes())
    result = run("electra-build-data", "--corpus-dir", "raw", "--vocab-file", "vocab.txt", "--output-dir", "out",
                 cwd=small)
    assert (result.returncode, result.stderr) == (
        2, "error: vocab file vocab.txt starts with a UTF-8 byte-order mark: save it without one "
           "(e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' vocab.txt)\n")
    assert not (small / "out").exists()


def test_a_truncated_manifest_does_not_block_overwrite(small):
    args = ["--corpus-dir", "raw", "--vocab-file", "vocab.txt", "--output-dir", "out", "--max-seq-length", "64"]
    assert run("electra-build-data", *args, cwd=small).returncode == 0
    good = snapshot(small / "out")
    manifest = small / "out" / "manifest.json"
    manifest.write_bytes(good["manifest.json"][:100])
    refused = run("electra-build-data", *args, cwd=small)
    assert refused.returncode == 2 and refused.stderr.startswith("error: corrupt manifest out/manifest.json: ")
    assert refused.stderr.endswith("; pass --overwrite to replace it\n") and refused.stderr.count("\n") == 1
    redone = run("electra-build-data", *args, "--overwrite", cwd=small)
    assert redone.returncode == 0, redone.stderr
    assert snapshot(small / "out") == good


def test_a_vocab_larger_than_vocab_size_says_why(small):
    result = run("electra-vocab", "--merge-with", "none", "--vocab-size", "300", "raw", "out", cwd=small)
    assert result.returncode == 0
    tokens = (small / "out" / "vocab.txt").read_text().split("\n")[:-1]
    chars = sum(1 for t in tokens if len(t) == 1)
    suffixes = sum(1 for t in tokens if len(t) == 3 and t.startswith("##"))
    assert len(tokens) > 300 and chars + suffixes + 5 >= 300
    assert result.stderr.startswith(f"electra-vocab: trained {len(tokens):,} tokens (more than --vocab-size 300: the "
                                    f"trainer always keeps the alphabet, {chars:,} characters and {suffixes:,} ## "
                                    "forms) on ")


# ---- (8) disk full is one line; nothing left that blocks the rerun, which is identical -----------

DISK_FULL = {  # the command on 3,000 corpus lines into tmp/out, and the file that fills the disk
    "electra-clean": (["{corpus}", "{out}"], "cleaned-00000-of-00001.txt"),
    "electra-vocab": (["--vocab-size", "500", "{corpus}", "{out}"], "vocab.txt"),  # merged: 35k tokens
    "electra-build-data": (["--corpus-dir", "{corpus}", "--vocab-file", str(KOELECTRA), "--output-dir", "{out}",
                            "--num-shards", "2"], "pretrain_data.tfrecord-0-of-2"),
}
SMALL_DISK = 64 << 10  # bytes: less than the first file each stage writes, more than the rest of the work needs


def _rlimit():
    """In the child: files may not grow past SMALL_DISK (EFBIG), as on a full disk (ENOSPC)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the default would kill the process; the write fails instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL_DISK, SMALL_DISK))


class SmallDisk(NamedTuple):
    folder: pathlib.Path
    fault: str  # ENOSPC: a real small file system; EFBIG: a file-size limit where none can be mounted
    preexec: Any

    def free(self) -> None:
        if self.fault == "ENOSPC":
            subprocess.run(["mount", "-o", "remount,size=64m", str(self.folder)], check=True)


@pytest.fixture()
def small_disk(tmp_path):
    """A tmpfs of SMALL_DISK bytes where this user may mount one (root), else a file-size limit."""
    where = tmp_path / "small-disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(where)],
                             capture_output=True)
    yield SmallDisk(where, "EFBIG", _rlimit) if mounted.returncode else SmallDisk(where, "ENOSPC", None)
    if not mounted.returncode:
        subprocess.run(["umount", str(where)], check=True)


def _fill_the_disk(command: str, disk: SmallDisk, tmp_path, corpus_path) -> None:
    args, first_file = DISK_FULL[command]
    out = disk.folder / "out"
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:3000]))
    names = dict(corpus=corpus, out=out)
    full = run(command, *[a.format(**names) for a in args], preexec_fn=disk.preexec)
    reason = {"ENOSPC": "No space left on device", "EFBIG": "File too large"}[disk.fault]
    assert (full.returncode, full.stderr) == (2, f"error: disk full writing {out / first_file}: {reason}; free space "
                                                 "and rerun the same command (finished work is kept)\n")
    left = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert not [name for name in left if ".tmp-" in name]  # no half-written file
    disk.free()
    rerun = run(command, *[a.format(**names) for a in args])
    assert rerun.returncode == 0, rerun.stderr
    reference = tmp_path / "reference"
    assert run(command, *[a.format(**dict(names, out=reference)) for a in args]).returncode == 0
    ours, theirs = snapshot(out), snapshot(reference)
    for stats in ("clean_stats.json", "vocab_report.json"):  # they hold the run time and the output path
        ours.pop(stats, None), theirs.pop(stats, None)
    assert ours == theirs


@pytest.mark.parametrize("command", list(DISK_FULL))
def test_disk_full_is_one_line_and_the_rerun_is_identical(command, small_disk, tmp_path, corpus_path):
    _fill_the_disk(command, small_disk, tmp_path, corpus_path)


def test_a_file_size_limit_is_one_line_too(tmp_path, corpus_path):
    """EFBIG (`ulimit -f`), which the small disk above is only where no tmpfs can be mounted."""
    _fill_the_disk("electra-build-data", SmallDisk(tmp_path, "EFBIG", _rlimit), tmp_path, corpus_path)



def test_a_damaged_shard_result_of_an_interrupted_build_is_rebuilt(small):
    """What a resume trusts: a shard file and a readable result; a damaged result means build it again."""
    args = dict(corpus_dir=str(small / "raw"), vocab_file=str(small / "vocab.txt"), output_dir=str(small / "out"),
                max_seq_length=64, num_shards=3)
    build.build(build.BuildConfig(**args))
    whole = snapshot(small / "out")
    manifest = records.read_manifest(str(small / "out"))
    (small / "out" / "manifest.json").unlink()  # as an interrupted build leaves it: progress in _build/
    state = small / "out" / "_build"
    state.mkdir()
    identity = {k: v for k, v in manifest.flags.items() if k not in ("num_processes", "files_per_process")}
    (state / "config.json").write_text(json.dumps(identity))
    for i, examples in enumerate(manifest.examples_per_shard[:2]):
        (state / f"shard-{i}-of-3.json").write_text(json.dumps({"index": i, "examples": examples, "tokens": 1}))
    (state / "shard-1-of-3.json").write_text('{"index": 1, "exam')  # damaged
    (small / "out" / "pretrain_data.tfrecord-2-of-3").unlink()
    summary = build.build(build.BuildConfig(**args))
    assert summary.kept_shards == 1  # shard 0; shard 1 (damaged result) and 2 (no file) built again
    assert summary.manifest.examples_per_shard == manifest.examples_per_shard
    assert {k: v for k, v in snapshot(small / "out").items() if k != "manifest.json"} == {
        k: v for k, v in whole.items() if k != "manifest.json"}


def test_a_vocab_file_that_is_a_named_pipe_is_one_line(small):
    (small / "vocab.txt").unlink()
    os.mkfifo(small / "vocab.txt")
    result = run("electra-build-data", "--corpus-dir", "raw", "--vocab-file", "vocab.txt", "--output-dir", "out",
                 cwd=small, timeout=60)
    assert (result.returncode, result.stderr) == (
        2, "error: vocab file vocab.txt is a named pipe: only regular files are read\n")
    assert not (small / "out").exists()


# ---- (9) SIGTERM (a VM shutting down, `kill`) ends a data stage with one line; the rerun resumes ---


def start(command: str, *args, cwd) -> subprocess.Popen:
    code = f"import {ENTRY[command]} as m; m.cli()"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _terminate_when(proc: subprocess.Popen, ready) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, "the stage ended before it was terminated"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigterm_during_records_is_one_line_and_the_rerun_keeps_finished_shards(tmp_path, corpus_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:6000]))
    args = ["--corpus-dir", corpus, "--vocab-file", KOELECTRA, "--output-dir", "out", "--num-shards", "30",
            "--num-processes", "2"]
    out = tmp_path / "out"
    stats = out / "_build"
    ended = _terminate_when(start("electra-build-data", *args, cwd=tmp_path),
                            lambda: stats.exists() and any(p.name.startswith("shard-") for p in stats.iterdir()))
    assert (ended.returncode, ended.stderr) == (143, "error: terminated (SIGTERM)\n")  # 143: a supervisor restarts
    left = sorted(p.name for p in out.iterdir())
    assert not [name for name in left if ".tmp-" in name] and "manifest.json" not in left
    kept = len(list(stats.glob("shard-*.json")))
    rerun = run("electra-build-data", *args, cwd=tmp_path)
    assert rerun.returncode == 0 and f" tokens/s (kept {kept} finished shards)" in rerun.stdout, rerun.stdout
    assert run("electra-build-data", *args[:5], "reference", *args[6:], cwd=tmp_path).returncode == 0
    assert 0 < kept < 30
    assert snapshot(out) == snapshot(tmp_path / "reference")


def test_sigterm_during_clean_is_one_line_and_leaves_nothing(tmp_path, corpus_path):
    out = tmp_path / "out"
    ended = _terminate_when(start("electra-clean", "--chunk-bytes", 4096, corpus_path, "out", cwd=tmp_path),
                            lambda: out.exists() and any(".tmp-" in p.name for p in out.iterdir()))
    assert (ended.returncode, ended.stderr) == (143, "error: terminated (SIGTERM)\n")  # 143: a supervisor restarts
    assert not out.exists()  # nothing finished: no folder to block the rerun
