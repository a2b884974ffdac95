"""Paths that may be local or `gs://`, read and written the same way.

Local paths use the standard library (fast start, no TensorFlow import); `gs://` paths go
through `tf.io.gfile`, imported only when such a path is seen. Writes are atomic: the data
goes to a temporary name beside the target and is renamed when complete, so a killed
process never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import glob as _glob
import gzip
import os
import uuid
from typing import IO, Iterator

from foundation.errors import UserError

TEXT_SUFFIXES = (".txt", ".txt.gz", ".gz")


def is_gcs(path: str) -> bool:
    return str(path).startswith("gs://")


def _gfile():
    from foundation.errors import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    return tf.io.gfile


def join(*parts: str) -> str:
    if is_gcs(parts[0]):
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))
    return os.path.join(*parts)


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_gcs(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_gcs(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    """Create a directory (and parents); a clear error if that is not possible."""
    try:
        if is_gcs(path):
            _gfile().makedirs(path)
        else:
            os.makedirs(path, exist_ok=True)
    except (OSError, Exception) as exc:  # gfile raises tf.errors.*, not OSError
        raise UserError(f"cannot create output directory {path}: {exc}") from exc


def glob(pattern: str) -> list[str]:
    return sorted(_gfile().glob(pattern) if is_gcs(pattern) else _glob.glob(pattern))


def remove(path: str) -> None:
    if is_gcs(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def _is_text_name(path: str) -> bool:
    """Corpus files: `.txt`, `.gz`, or no extension at all (WikiExtractor's `wiki_00`);
    never hidden files, temporaries or side files such as `stats.json`."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return not name.startswith(".") and ".tmp-" not in name and (name.endswith(TEXT_SUFFIXES) or "." not in name)


def size(path: str) -> int:
    return _gfile().stat(path).length if is_gcs(path) else os.path.getsize(path)


def list_text_files(path: str) -> list[str]:
    """The corpus files under a directory (sorted, recursive), or the file itself."""
    if not exists(path):
        raise UserError(f"input not found: {path}")
    if not isdir(path):
        return [path]
    if is_gcs(path):
        found = [p for p in _gfile().glob(join(path, "**")) + _gfile().glob(join(path, "*")) if _is_text_name(p)]
    else:
        found = [
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if _is_text_name(name)
        ]
    files = sorted(set(found))
    if not files:
        raise UserError(f"no text files (.txt, .gz or without extension) in directory {path}")
    return files


def open_read(path: str) -> IO[bytes]:
    """Open a local or `gs://` file for binary reading, un-gzipping `.gz` transparently."""
    try:
        raw: IO[bytes] = _gfile().GFile(path, "rb") if is_gcs(path) else open(path, "rb")
    except FileNotFoundError as exc:
        raise UserError(f"input not found: {path}") from exc
    except Exception as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def iter_lines(path: str) -> Iterator[bytes]:
    """Lines of a file as bytes without the trailing newline; a line ends at `\\n` only.

    A bare `\\r` inside a line stays in it (the NSMC dump has some). A corrupt gzip
    stream raises `UserError` naming the file.
    """
    with open_read(path) as fh:
        try:
            for raw in fh:
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
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    parent = os.path.dirname(path) if not is_gcs(path) else None
    if parent:
        makedirs(parent)
    try:
        fh = _gfile().GFile(tmp, mode) if is_gcs(path) else open(tmp, mode)
    except Exception as exc:
        raise UserError(f"cannot write {path}: {exc}") from exc
    try:
        with fh:
            yield fh
        if is_gcs(path):
            _gfile().rename(tmp, path, overwrite=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(text.encode("utf-8"))
