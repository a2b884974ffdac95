"""Paths that may be local or `gs://`, read and written the same way.

Local paths use the standard library; `gs://` paths go through `foundation.gcs`
(google-cloud-storage, imported only when such a path is seen), where every access error is
one `UserError` naming the path and the fix. Writes are atomic: a local file goes to a
temporary name beside the target (`NAME.tmp-XXXXXXXX`) and is renamed when complete; a
Cloud Storage object is uploaded whole. A killed process never leaves a half-written file
under the final name.
"""
from __future__ import annotations

import contextlib
import errno
import glob as _glob
import gzip
import os
import re
import stat as stat_module
import sys
import uuid
from typing import IO, Iterator, NamedTuple

from foundation.errors import UserError, disk_full

TEXT_SUFFIXES = (".txt", ".txt.gz", ".gz")
# The longest line a stage reads: lines are read in bounded pieces, so a file without
# newlines (a 50 MB blob) costs this much memory, not its size. electra-clean drops longer
# lines and counts them (`too_long`); the records and vocab stages report them.
MAX_LINE_BYTES = 1 << 20
TEMPORARY_RE = re.compile(r"\.tmp-[0-9a-f]{8}$")  # atomic_write's in-progress names


def is_gcs(path: str) -> bool:
    return str(path).startswith("gs://")


def _gcs():
    from foundation import gcs

    return gcs


class FileStat(NamedTuple):
    size: int
    mtime_ns: int


def join(*parts: str) -> str:
    if is_gcs(parts[0]):
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))
    return os.path.join(*parts)


def exists(path: str) -> bool:
    return _gcs().exists(path) if is_gcs(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gcs().isdir(path) if is_gcs(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    """Create a directory (and parents); a clear error if that is not possible. On Cloud
    Storage there are no folders: the bucket's access is checked instead."""
    if is_gcs(path):
        _gcs().check_access(path)
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {path}: {exc.strerror}") from exc


def glob(pattern: str) -> list[str]:
    return sorted(_gcs().glob(pattern) if is_gcs(pattern) else _glob.glob(pattern))


def remove(path: str) -> None:
    if is_gcs(path):
        _gcs().remove(path)
    else:
        os.remove(path)


def stat(path: str) -> FileStat:
    """Size and modification time (ns), what an input fingerprint is made of."""
    if is_gcs(path):
        return FileStat(*_gcs().stat(path))
    st = os.stat(path)
    return FileStat(st.st_size, st.st_mtime_ns)


def _is_text_name(path: str) -> bool:
    """Corpus files: `.txt`, `.gz`, or no extension at all (WikiExtractor's `wiki_00`);
    never hidden files, temporaries or side files such as `stats.json`."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return not name.startswith(".") and not TEMPORARY_RE.search(name) and (name.endswith(TEXT_SUFFIXES) or "." not in name)


def size(path: str) -> int:
    return stat(path).size


def walk(path: str) -> list[str]:
    """Every file under a folder (recursive); nothing for a folder that does not exist."""
    if is_gcs(path):
        return _gcs().walk(path)
    return [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]


# Text files that stages write beside their output, never corpus text: a vocab (electra-vocab,
# the trainer's data and model folders, an export) and, beside `sample_stats.json`,
# electra-beam's vocab sample and its copy of the merge vocab.
STAGE_TEXT_FILES = {"vocab.txt": None, "sample.txt": "sample_stats.json", "merge_vocab.txt": "sample_stats.json"}


def _stage_written(path: str) -> bool:
    folder, name = os.path.split(path)
    if name not in STAGE_TEXT_FILES:
        return False
    beside = STAGE_TEXT_FILES[name]
    return beside is None or os.path.exists(os.path.join(folder, beside))


def check_regular_file(path: str, role: str = "corpus entry") -> None:
    """A local input must be a regular file (a symlink to one is fine): a named pipe would
    block the reader forever, a dangling or looping link fail in the middle of a run."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if not os.path.islink(path):
            raise UserError(f"input not found: {path}") from exc
        what = "a symlink loop" if exc.errno == errno.ELOOP else f"a dangling symlink (to {os.readlink(path)})"
        raise UserError(f"{role} {path} is {what}: fix or remove it") from exc
    if not stat_module.S_ISREG(mode):
        what = "a named pipe" if stat_module.S_ISFIFO(mode) else "not a regular file"
        raise UserError(f"{role} {path} is {what}: only regular files are read")


def _walk_links(path: str) -> list[str]:
    """`walk` into symlinked folders too, each real folder once (a link loop ends there)."""
    seen: set[str] = set()
    found = []
    for root, dirs, names in os.walk(path, followlinks=True):
        seen.add(os.path.realpath(root))
        kept = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(root, d))
            if real not in seen:
                seen.add(real)
                kept.append(d)
        dirs[:] = kept
        found += [os.path.join(root, name) for name in names]
    return found


def list_text_files(path: str) -> list[str]:
    """The corpus files under a directory (sorted, recursive), or the file itself.

    Local entries must be regular files (`check_regular_file`); symlinked folders are searched
    (each real folder once); the text files a stage wrote (`STAGE_TEXT_FILES`) are skipped with
    a warning.
    """
    if is_gcs(path) and not exists(path):
        raise UserError(f"input not found: {path}")
    if not isdir(path):
        if not is_gcs(path):
            check_regular_file(path)
        return [path]
    files = []
    for p in sorted(p for p in (walk(path) if is_gcs(path) else _walk_links(path)) if _is_text_name(p)):
        if is_gcs(p):
            files.append(p)
        elif _stage_written(p):
            print(f"warning: skipping {p}: a file a stage wrote ({os.path.basename(p)}), not corpus text",
                  file=sys.stderr)
        else:
            check_regular_file(p)
            files.append(p)
    if not files:
        raise UserError(f"no text files (.txt, .gz or without extension) in directory {path}")
    return files


def open_read(path: str) -> IO[bytes]:
    """Open a local or `gs://` file for binary reading, un-gzipping `.gz` transparently."""
    try:
        raw: IO[bytes] = _gcs().open_read(path) if is_gcs(path) else open(path, "rb")
    except FileNotFoundError as exc:
        raise UserError(f"input not found: {path}") from exc
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def line_too_long(location: str) -> UserError:
    return UserError(f"{location}: line longer than {MAX_LINE_BYTES:,} bytes; split it into lines "
                     "(electra-clean drops such lines and counts them as too_long)")


def read_line(fh: IO[bytes], location) -> bytes:
    """The next line with its newline (b"" at the end), read with bounded memory; a line
    longer than `MAX_LINE_BYTES` (its newline not counted) is an error at `location()`
    (called only then)."""
    raw = fh.readline(MAX_LINE_BYTES + 1)
    if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
        raise line_too_long(location())
    return raw


def iter_lines(path: str) -> Iterator[bytes]:
    """Lines of a file as bytes without the trailing newline; a line ends at `\\n` only.

    A bare `\\r` inside a line stays in it (the NSMC dump has some). A corrupt gzip
    stream, or a line longer than `MAX_LINE_BYTES`, raises `UserError` naming the file.
    """
    number = 0
    with open_read(path) as fh:
        try:
            while raw := read_line(fh, lambda: f"{path}:{number + 1}"):
                number += 1
                yield raw[:-1] if raw.endswith(b"\n") else raw
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UserError(f"unreadable file {path}: {exc}") from exc


def read_text(path: str) -> str:
    with open_read(path) as fh:
        try:
            return fh.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text: {exc}") from exc


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary name beside `path`, rename over it only on success."""
    if is_gcs(path):
        with _gcs().write(path, mode) as fh:
            yield fh
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    parent = os.path.dirname(path)
    if parent:
        makedirs(parent)
    try:
        fh = open(tmp, mode)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with fh:
            yield fh
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and disk_full(exc):  # no read error has these numbers
            raise UserError(f"disk full writing {path}: {exc.strerror}; free space and rerun the same command "
                            "(finished work is kept)") from exc
        raise


def write_text(path: str, text: str) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(text.encode("utf-8"))
