"""The docs run as written: every shell and Python block of README.md and docs/*.md.

A block is run in a scratch folder laid out like a fresh clone (the repository's files linked,
`.venv` the test's own environment, `../shared` the shared peers and data), with `bash -e -o
pipefail` so that any failing command fails it. An HTML comment on the line before a block
says what else it needs, promises or is (parts separated by `;`):

    <!-- doc-test: slow; after docs/clean_and_vocab.md; creates runs/x/a.json; prints "13,833"; never "WARNING" -->

- (no comment)  CPU-runnable in seconds: run by `make test`. A new block without a comment is
                run, so a block that cannot run as written fails until it is fixed or marked.
- `slow`        CPU-runnable but minutes long (the demo, a training): run by `make test-slow`.
- `cloud`       needs Google Cloud, a TPU, hours, or paths the reader substitutes: each of its
                commands is checked instead (`scripts/*.sh ... --dry-run`; our commands' `--help`
                lists every flag the block uses).
- `skip: why`   not run (e.g. `make test`, which runs this test).
- `after DOC`   DOC's runnable blocks run first in the same folder (the block reads their output);
                `after DOC#N`: DOC's N-th shell or Python block.
- `creates P..` these paths exist afterwards.
- `prints "T"`  the output holds T; a number written `~N` matches within 2% of N (a figure
                that the corpus or the vocab's tie-breaking moves a little).
- `never "T"`   the output does not hold T.
Every run's output is also free of progress-bar frames (`\\r`).
"""
from __future__ import annotations

import functools
import os
import pathlib
import re
import shlex
import subprocess
import sys
from typing import NamedTuple

import pytest

from conftest import ROOT

DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
SHELL, PYTHON = {"sh", "bash", "shell"}, {"python"}
KINDS = {"run", "slow", "cloud", "skip"}
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
TOLERANCE = 0.02
SHELL_WORDS = {"do", "then", "else", "!", "time", "nohup"}
OURS = re.compile(r"^(electra-[\w-]+|scripts/\w+\.sh)$")


class Block(NamedTuple):
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    kind: str = "run"
    after: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()
    prints: tuple[str, ...] = ()
    never: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"


def parse_marker(text: str) -> dict:
    """`slow; creates a b; prints "x" "y"` -> {"kind": "slow", "creates": ("a", "b"), "prints": ("x", "y")}."""
    out: dict = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        word, _, rest = part.partition(" ")
        word = word.rstrip(":")
        if word in KINDS:
            assert "kind" not in out, f"two kinds in {text!r}"
            assert word != "skip" or rest.strip(), f"say why a block is skipped: {text!r}"
            out["kind"] = word
        elif word in ("after", "creates", "prints", "never"):
            out[word] = tuple(shlex.split(rest))
            assert out[word], f"{word} names nothing in {text!r}"
        else:
            raise AssertionError(f"unknown doc-test marker part {part!r} (known: {sorted(KINDS)}, after, creates, "
                                 "prints, never)")
    return out


def blocks(doc: str) -> list[Block]:
    """The shell and Python blocks of one doc, with their markers; other fences (usage synopses,
    logs, diagrams) are text."""
    lines = (ROOT / doc).read_text(encoding="utf-8").split("\n")
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        indent, lang = len(m.group(1)), m.group(2)
        if lang in SHELL | PYTHON:
            prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(prev)
            code = "\n".join(line[indent:] for line in lines[i + 1:end])
            found.append(Block(doc, i + 1, lang, code, **(parse_marker(marker.group(1)) if marker else {})))
        i = end + 1
    return found


ALL = [b for doc in DOCS for b in blocks(doc)]


@pytest.fixture(scope="session")
def clone(tmp_path_factory) -> pathlib.Path:
    """A folder laid out like a fresh clone after `make test`: the repository's files linked, no runs/."""
    top = tmp_path_factory.mktemp("docs")
    root = top / "electra"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".venv", ".venv-tpu", "runs", "tpu.env", ".pytest_cache", "build"} \
                and not entry.name.endswith(".egg-info"):
            (root / entry.name).symlink_to(entry)
    venv = root / ".venv"  # this test's environment, with a fresh stamp so that `make` installs nothing
    venv.mkdir()
    for entry in pathlib.Path(sys.prefix).iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()
    try:
        from shared_paths import SHARED

        (top / "shared").symlink_to(SHARED)
    except RuntimeError:
        pass  # the blocks that read ../shared fail and say so
    return root


def _env(clone: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TPU_ENV"))}
    env.update(PATH=f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(clone),
               TF_CPP_MIN_LOG_LEVEL="2", ELECTRA_SHARED_DIR=str(clone.parent / "shared"))
    return env


@pytest.fixture(scope="session")
def run_doc(clone):
    """Runs a block (once per session: a later block may read an earlier one's output)."""
    done: dict[str, subprocess.CompletedProcess] = {}

    def run(block: Block) -> subprocess.CompletedProcess:
        if block.name in done:
            return done[block.name]
        for earlier in prerequisites(block):
            check(run(earlier), earlier, clone)
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code] if block.lang in SHELL else \
            [sys.executable, "-c", block.code]
        done[block.name] = subprocess.run(cmd, cwd=clone, env=_env(clone), capture_output=True, text=True,
                                          timeout=3600)
        return done[block.name]

    return run


def prerequisites(block: Block) -> list[Block]:
    out = []
    for ref in block.after:
        doc, _, number = ref.partition("#")
        found = blocks(doc)
        out += [found[int(number) - 1]] if number else [b for b in found if b.kind == "run"]
    return out


def figure_pattern(text: str) -> re.Pattern:
    """`wrote ~13,912 examples` -> a pattern whose ~N matches any number within TOLERANCE of N."""
    parts = re.split(r"~([\d,]+(?:\.\d+)?)", text)
    pattern = "".join(re.escape(p) if i % 2 == 0 else r"([\d,]+(?:\.\d+)?)" for i, p in enumerate(parts))
    return re.compile(pattern)


def holds(text: str, output: str) -> bool:
    expected = [float(v.replace(",", "")) for v in re.findall(r"~([\d,]+(?:\.\d+)?)", text)]
    for m in figure_pattern(text).finditer(output):
        got = [float(v.replace(",", "")) for v in m.groups()]
        if all(abs(g - e) <= TOLERANCE * abs(e) for g, e in zip(got, expected)):
            return True
    return False


def check(proc: subprocess.CompletedProcess, block: Block, clone: pathlib.Path) -> None:
    output = proc.stdout + proc.stderr
    where = f"{block.name} as written:\n{block.code}\n--- output (end) ---\n{output[-4000:]}"
    assert proc.returncode == 0, where
    assert "\r" not in output, f"progress-bar frames in the output of {where}"
    for path in block.creates:
        assert (clone / path).exists(), f"{path} was not created by {where}"
    for text in block.prints:
        assert holds(text, output), f"{text!r} not in the output of {where}"
    for text in block.never:
        assert text not in output, f"{text!r} in the output of {where}"


def commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block: continuation lines joined, comments dropped, split
    at `&&`, `||`, `;`, `|`, `&`, leading VAR=value assignments removed."""
    joined = re.sub(r"\\\n", " ", code)
    out = []
    for line in joined.split("\n"):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split, lexer.commenters = True, "#"
        words: list[str] = []
        for token in list(lexer) + [";"]:
            if token and set(token) <= set(";&|"):
                while words and (re.match(r"^\w+=", words[0]) or words[0] in SHELL_WORDS):
                    words.pop(0)
                if words:
                    out.append(words)
                words = []
            else:
                words.append(token)
    return out


def dry_check(words: list[str]) -> list[str] | None:
    """How a command that needs the cloud is checked here, or None when it is not ours
    (`gcloud`, `pip`, shell built-ins)."""
    if words[0] == "python" and len(words) > 1:
        module = ["-m", words[2]] if words[1] == "-m" and len(words) > 2 else [words[1]]
        if module[0] != "-m" and not (module[0].endswith(".py") and (ROOT / module[0]).exists()):
            return None
        rest = words[1 + len(module):]
        sub = rest[:1] if rest and re.fullmatch(r"[a-z]+", rest[0]) else []
        return [sys.executable, *module, *sub, "--help"]
    if OURS.match(words[0]):
        if words[0].startswith("scripts/"):
            return [words[0], *words[1:], "--config", "scripts/tpu.env.example", "--dry-run"]
        sub = words[1:2] if len(words) > 1 and re.fullmatch(r"[a-z]+", words[1]) else []
        return [words[0], *sub, "--help"]
    return None


# ---- the tests ------------------------------------------------------------------------------


def test_every_marked_doc_reference_exists():
    assert len(ALL) >= 30  # the extraction finds the blocks (README and docs/ held 33 when this was written)
    for block in ALL:
        for ref in block.after:
            doc, _, number = ref.partition("#")
            assert doc in DOCS, f"{block.name}: after {ref}: no such doc"
            assert not number or 1 <= int(number) <= len(blocks(doc)), f"{block.name}: after {ref}: no such block"
            assert all(b.kind in ("run", "slow") for b in prerequisites(block)), f"{block.name}: after {ref}"


def test_the_parser_reads_fences_markers_and_figures():
    assert parse_marker('slow; after docs/a.md; creates x y; prints "a b" "~1,000 rows"; never "WARNING"') == {
        "kind": "slow", "after": ("docs/a.md",), "creates": ("x", "y"), "prints": ("a b", "~1,000 rows"),
        "never": ("WARNING",)}
    with pytest.raises(AssertionError, match="unknown doc-test marker part"):
        parse_marker("sloow")
    assert holds("wrote ~13,912 examples", "wrote 13,950 examples (1 shard)")
    assert not holds("wrote ~13,912 examples", "wrote 14,300 examples")
    assert commands('A=1 python x.py --a 1 \\\n  --b "c d" # note\nscripts/s.sh && scripts/t.sh --yes &') == [
        ["python", "x.py", "--a", "1", "--b", "c d"], ["scripts/s.sh"], ["scripts/t.sh", "--yes"]]


FAST = [b for b in ALL if b.kind == "run"]
SLOW = [b for b in ALL if b.kind == "slow"]
CLOUD = [b for b in ALL if b.kind == "cloud"]


@pytest.mark.parametrize("block", FAST, ids=[b.name for b in FAST])
def test_a_cpu_block_runs_as_written(block, run_doc, clone):
    check(run_doc(block), block, clone)


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW, ids=[b.name for b in SLOW])
def test_a_slow_cpu_block_runs_as_written(block, run_doc, clone):
    check(run_doc(block), block, clone)


@pytest.mark.parametrize("block", CLOUD, ids=[b.name for b in CLOUD])
def test_a_cloud_block_names_real_commands_and_flags(block, clone, run_doc):
    for earlier in prerequisites(block):
        check(run_doc(earlier), earlier, clone)
    if block.lang in PYTHON:
        compile(block.code, block.name, "exec")
        imports = "\n".join(line for line in block.code.splitlines() if line.startswith(("from ", "import ")))
        proc = subprocess.run([sys.executable, "-c", imports], cwd=clone, env=_env(clone), capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, f"{block.name}: {proc.stderr[-2000:]}"
        return
    checked = 0
    for words in commands(block.code):
        how = dry_check(words)
        if how is None:
            continue
        proc = _help(tuple(how), clone)
        assert proc.returncode == 0, f"{block.name}: {' '.join(how)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        if how[-1] == "--help":
            for flag in (w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("--")):
                assert flag in proc.stdout, f"{block.name}: {words[0]} has no flag {flag} ({' '.join(how)})"
        checked += 1
    assert checked or "gcloud" in block.code, f"{block.name}: no command of ours to check"


@functools.lru_cache(maxsize=None)
def _help(how: tuple[str, ...], clone: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(how), cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=120)


def test_what_the_docs_have_a_user_create_is_ignored_by_git():
    """tpu.env holds a project and bucket name; exported/ and export/ hold models (docs/export.md,
    scripts/export.sh); runs/ everything else."""
    created = {p for b in ALL for p in b.creates} | {"exported/NAME/discriminator", "export/MODEL_NAME/x"}
    proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *sorted(created)],
                          capture_output=True, text=True)
    assert sorted(proc.stdout.split()) == sorted(created)


def test_make_test_with_its_own_quiet_flag_keeps_the_summary_line():
    """`make test ARGS=-q` must not become `pytest -q -q`, which drops pytest's summary line."""
    for args, expected in (("-q", 1), ("-x", 1), ("", 1)):
        proc = subprocess.run(["make", "--no-print-directory", "-n", "test", f"ARGS={args}"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "MAKEFLAGS": ""})
        line = proc.stdout.strip().splitlines()[-1]
        assert line.split().count("-q") == expected, line
