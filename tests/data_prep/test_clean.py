"""The `electra-clean` stage: unix-filter parity, filters and their counts, sharding,
process-count independence, and bad input."""
import dataclasses
import gzip
import json
import subprocess
import sys

import pytest

from data_prep import clean
from data_prep.normalize import clean_lines
from foundation.errors import UserError
from data_prep.filters import FilterConfig

from conftest import ROOT
from shared_paths import KCELECTRA_CLEAN

PEER = KCELECTRA_CLEAN


def electra_clean(*args, stdin=None):
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "electra-clean"), *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def read_shards(directory, n):
    return [(directory / clean.shard_name(i, n)).read_text(encoding="utf-8") for i in range(n)]


def test_keep_all_matches_peer_script_byte_for_byte(tmp_path, corpus_path):
    """Real NSMC text plus lines the corpus lacks: a bare \\r inside a line, no final \\n."""
    extra = "첫줄\r같은 줄 ㅋㅋㅋㅋㅋ\n\n   \n마지막 줄 https://a.co/x 끝".encode()
    src = tmp_path / "in.txt"
    src.write_bytes(corpus_path.read_bytes() + extra)
    peer = subprocess.run([sys.executable, str(PEER)], input=src.read_bytes(), capture_output=True, check=True)
    out = tmp_path / "out.txt"
    result = electra_clean("--preset", "kcelectra", "--keep-all", "--num-processes", "2", "--chunk-bytes", "65536", src, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == peer.stdout
    assert out.read_bytes().count(b"\n") == src.read_bytes().count(b"\n") + 1 == 15_539
    assert b"lines 15,539 -> 15,539" in result.stderr


def test_keep_all_stdin_to_stdout():
    result = electra_clean("--preset", "kcelectra", "--keep-all", "-", "-", stdin="가나다라 👍👍 ㅎㅎㅎㅎ\n\n漢\n".encode())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "가나다라 ㅎㅎ\n\n\n".encode()


def expected_run(corpus_path, preset, min_line_chars=10, min_document_lines=1):
    """An independent, line-at-a-time statement of what the filtered run must produce."""
    docs, doc = [], []
    for line in corpus_path.read_text(encoding="utf-8").split("\n")[:-1] + [""]:
        if line.strip():
            doc.append(line)
        elif doc:
            docs.append(doc)
            doc = []
    seen, kept, counts = set(), [], {"empty": 0, "too_short": 0, "duplicate": 0, "short_document": 0}
    for doc in docs:
        out = []
        for line in clean_lines(doc, preset):
            if not line:
                counts["empty"] += 1
            elif len(line) < min_line_chars:
                counts["too_short"] += 1
            elif line in seen:
                counts["duplicate"] += 1
            else:
                seen.add(line)
                out.append(line)
        if len(out) < min_document_lines or not out:
            counts["short_document"] += len(out)
        else:
            kept.append(out)
    return docs, kept, counts


def test_filtered_run_counts_every_drop_and_writes_documents(tmp_path, corpus_path):
    docs, kept, counts = expected_run(corpus_path, "kcelectra", min_document_lines=20)
    out = tmp_path / "out"
    config = clean.CleanConfig(
        inputs=(str(corpus_path),),
        output=str(out),
        preset="kcelectra",
        filters=FilterConfig(min_document_lines=20),
        num_shards=3,
    )
    stats = clean.run(config)
    assert stats.documents_in == len(docs) == 300
    assert stats.documents_out == len(kept)
    assert stats.lines_in == sum(map(len, docs)) == 15_235
    assert stats.lines_out == sum(map(len, kept))
    assert {k: v for k, v in stats.dropped.items() if k not in ("non_utf8", "too_long")} == counts
    assert all(counts.values())  # the real corpus hits every filter
    assert stats.lines_in == stats.lines_out + sum(stats.dropped.values())
    # Documents dealt round-robin to the shards, a blank line between documents.
    shards = read_shards(out, 3)
    for i, text in enumerate(shards):
        assert text == "\n".join("\n".join(doc) + "\n" for doc in kept[i::3])
    saved = json.loads((out / "clean_stats.json").read_text())
    assert saved["dropped"]["duplicate"] == counts["duplicate"]
    assert saved["config"]["min_document_lines"] == 20 and saved["config"]["preset"] == "kcelectra"


def test_output_independent_of_processes_and_chunks(tmp_path, corpus_path):
    outputs = []
    for processes, chunk in [(1, 1 << 20), (2, 4096), (2, 100_000)]:
        out = tmp_path / f"p{processes}-{chunk}"
        stats = clean.run(
            clean.CleanConfig(
                inputs=(str(corpus_path),), output=str(out), preset="kcelectra", num_shards=2,
                num_processes=processes, chunk_bytes=chunk,
            )
        )
        outputs.append((read_shards(out, 2), stats.to_dict()))
    assert outputs[0] == outputs[1] == outputs[2]


def test_each_filter_switchable_and_non_utf8_located(tmp_path):
    src = tmp_path / "small.txt"
    src.write_bytes(
        "영화가 정말 재미있었어요 최고\n"  # kept
        "짧다\n"  # too_short
        "영화가 정말 재미있었어요 최고\n"  # duplicate
        "👍👍👍\n"  # default keeps emoji: too_short; kcelectra: empty
        "\n"
        "한 줄뿐인 문서의 유일한 문장입니다\n"
        "\n\n"
        .encode()
        + b"\xff\xfe broken bytes in this line\n"
        + "두 번째 문서의 마지막 문장입니다 ㅎㅎ\n".encode()
    )
    out = tmp_path / "o"
    stats = clean.run(clean.CleanConfig(inputs=(str(src),), output=str(out), filters=FilterConfig(min_document_lines=2)))
    assert stats.dropped == {"non_utf8": 1, "too_long": 0, "empty": 0, "too_short": 2, "duplicate": 1, "short_document": 3}
    assert (stats.documents_in, stats.documents_out, stats.documents_dropped) == (3, 0, 3)
    assert stats.non_utf8_locations == [f"{src}:9"]
    # All filters off: every line that is not empty after cleaning stays, bad bytes as U+FFFD.
    off = FilterConfig(min_line_chars=0, dedupe=False, min_document_lines=0, drop_non_utf8=False)
    stats = clean.run(clean.CleanConfig(inputs=(str(src),), output=str(out), filters=off))
    assert stats.dropped == {"non_utf8": 0, "too_long": 0, "empty": 0, "too_short": 0, "duplicate": 0, "short_document": 0}
    assert stats.non_utf8_lines == 1
    assert read_shards(out, 1)[0] == (
        "영화가 정말 재미있었어요 최고\n짧다\n영화가 정말 재미있었어요 최고\n👍👍👍\n\n"
        "한 줄뿐인 문서의 유일한 문장입니다\n\n"
        "\ufffd\ufffd broken bytes in this line\n두 번째 문서의 마지막 문장입니다 ㅎㅎ\n"
    )


def test_gzip_input_and_directory_input(tmp_path, corpus_path):
    lines = corpus_path.read_bytes().split(b"\n")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.txt").write_bytes(b"\n".join(lines[:200]) + b"\n")
    with gzip.open(tmp_path / "in" / "sub" / "b.txt.gz", "wb") as fh:
        fh.write(b"\n".join(lines[200:400]))  # no final newline
    (tmp_path / "in" / "notes.md").write_text("not a corpus file")
    stats = clean.run(clean.CleanConfig(inputs=(str(tmp_path / "in"),), output=str(tmp_path / "o")))
    assert stats.files == 2
    assert stats.lines_in == sum(1 for line in lines[:400] if line.strip())

    def documents(part):  # a document ends at a blank line or at the end of its file
        return sum(1 for i, line in enumerate(part) if line.strip() and (i + 1 == len(part) or not part[i + 1].strip()))

    assert stats.documents_in == documents(lines[:200]) + documents(lines[200:400])
    assert documents(lines[:200]) + documents(lines[200:400]) == documents(lines[:400]) + 1  # one split by the files


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda d: None, ["{d}/missing.txt", "{d}/out"], "input not found: {d}/missing.txt"),
        (lambda d: (d / "e.txt").write_text("\n\n"), ["{d}/e.txt", "{d}/out"], "empty corpus: no text lines in {d}/e.txt"),
        (lambda d: (d / "x").mkdir(), ["{d}/x", "{d}/out"], "no text files (.txt, .gz or without extension) in directory {d}/x"),
        (lambda d: (d / "c.gz").write_bytes(b"\x1f\x8b\x08\x00garbage"), ["{d}/c.gz", "{d}/out"], "unreadable file {d}/c.gz"),
        (lambda d: (d / "f").write_text(""), ["{corpus}", "{d}/f/out"], "cannot create output directory {d}/f/out"),
        (lambda d: None, ["--num-processes", "0", "{corpus}", "{d}/out"], "num_processes must be a positive integer, got 0"),
        (lambda d: None, ["{corpus}", "-"], "output '-' (stdout) needs --keep-all"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(tmp_path, corpus_path, make, args, message):
    make(tmp_path)
    fill = {"d": tmp_path, "corpus": corpus_path}
    result = electra_clean(*[a.format(**fill) for a in args])
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message.format(**fill)}")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_rerun_skips_finished_work(tmp_path, corpus_path, capfd):
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:2000]))
    out = tmp_path / "out"
    config = clean.CleanConfig(inputs=(str(src),), output=str(out), num_shards=2)
    first = clean.run(config)
    shard = out / clean.shard_name(0, 2)
    stamp = shard.stat().st_mtime_ns
    # Same inputs and output settings (the process count does not change the output): skipped.
    again = clean.run(dataclasses.replace(config, num_processes=2))
    assert again == first and shard.stat().st_mtime_ns == stamp
    assert "is up to date" in capfd.readouterr().err
    # A changed filter, a changed input, or --overwrite: done again.
    assert clean.run(dataclasses.replace(config, filters=FilterConfig(min_line_chars=20))).lines_out < first.lines_out
    with open(src, "ab") as fh:
        fh.write("새로 추가된 아주 긴 리뷰 한 줄입니다\n".encode())
    assert clean.run(config).lines_out == clean.run(dataclasses.replace(config, overwrite=True)).lines_out
    assert "is up to date" not in capfd.readouterr().err.split("\n")[0]
    assert clean.run(config).lines_in == first.lines_in + 1


def test_config_from_dict_rejects_unknown_keys(corpus_path):
    config = clean.CleanConfig.from_dict({"inputs": [str(corpus_path)], "output": "o", "preset": "kcelectra", "dedupe": False})
    assert config.filters == FilterConfig(dedupe=False) and config.inputs == (str(corpus_path),)
    assert clean.CleanConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UserError, match="unknown key 'min_chars' in config"):
        clean.CleanConfig.from_dict({"inputs": ["x"], "output": "o", "min_chars": 3})
