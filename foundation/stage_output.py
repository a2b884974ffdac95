"""A stage's output folder: kept apart from its inputs, skipped when finished, clean after a failure.

Every stage that writes a folder (`electra-clean`, `electra-vocab`, `electra-build-data`) goes
through `StageOutput`, so the rules hold everywhere and are written once:

- Apart: an output inside an input (`electra-clean d d/clean`) would be read back by the next
  run, an output that is an input (`electra-clean --keep-all in.txt in.txt`, `--stats-file`
  naming an input) would replace it, and an input inside the output could be overwritten; all
  are refused before anything is written (`check_outputs_apart`, also for outputs that are
  single files).
- Finished: files are written with `fileio.atomic_write` (temporary name, then rename) and the
  marker file last; the marker holds the settings and the input fingerprints, so a rerun
  whose settings and inputs match, with every output file present, is skipped.
- One writer: the folder is written under its lease (`foundation.lease`); a second writer is
  refused with one line naming the holder, before it touches anything.
- Clean: temporaries that a killed run left (`*.tmp-XXXXXXXX`) are removed when the next run
  starts; a failed run that finished nothing removes its scratch files and the folder it
  created, so the corrected command runs without manual clean-up.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any, Iterator, Sequence

from foundation import fileio, lease
from foundation.errors import UserError

Fingerprint = list  # [[path, size, mtime_ns], ...]


def input_fingerprint(files: Sequence[str]) -> Fingerprint:
    """(path, size, modification time in ns) of each input file: what a skip compares."""
    return [[path, *fileio.stat(path)] for path in files]


def _normal(path: str) -> str:
    return path.rstrip("/") if fileio.is_gcs(path) else os.path.realpath(path)


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_apart(output: str, inputs: Sequence[str]) -> None:
    """Refuse an output that is, or lies inside, an input, and an input inside the output."""
    out = _normal(output)
    for given in inputs:
        path = _normal(given)
        if out == path and not fileio.isdir(given):
            raise UserError(f"output {output} is the input {given}: writing it would replace the input; "
                            "choose another output")
        if _within(out, path):
            raise UserError(f"output {output} is inside the input {given}: the next run would read its own "
                            "output back; choose an output folder outside the input")
        if _within(path, out):
            raise UserError(f"input {given} is inside the output {output}: choose an output folder that "
                            "holds no input")


def check_outputs_apart(outputs: Sequence[str], inputs: Sequence[str]) -> None:
    """`check_apart` for every path a stage writes (its folder, a statistics file elsewhere, a
    single output file): no output may replace or sit inside what the stage reads."""
    for output in outputs:
        check_apart(output, inputs)


def _matches(saved: Any, expected: Any) -> bool:
    """Every key of `expected` (recursively for dicts) has the same value in `saved`."""
    if isinstance(expected, dict):
        return isinstance(saved, dict) and all(k in saved and _matches(saved[k], v) for k, v in expected.items())
    return saved == expected


def _same(a: str, b: str) -> bool:
    return a == b if fileio.is_gcs(a) else os.path.normpath(a) == os.path.normpath(b)


@dataclasses.dataclass(frozen=True)
class StageOutput:
    """One stage's output folder; constructing it checks that it is apart from the inputs."""

    directory: str
    inputs: tuple[str, ...]  # files and folders the stage reads
    marker: str  # path of the JSON file written last; its presence (and content) means finished
    files: tuple[str, ...] = ()  # paths of the other files a finished run leaves
    scratch: tuple[str, ...] = ()  # paths of files that record no finished work (bookkeeping)

    def __post_init__(self) -> None:
        check_outputs_apart((self.directory, self.marker), self.inputs)

    def finished(self, **expected: Any) -> dict[str, Any] | None:
        """The marker's content if it matches `expected` (each key; dicts key by key) and every
        output file is there; None when the work has to be done."""
        if not fileio.exists(self.directory) or not fileio.exists(self.marker):
            return None
        try:
            saved = json.loads(fileio.read_text(self.marker))
        except (ValueError, UserError):
            return None
        present = set(fileio.walk(self.directory))  # one listing, not a request per file
        if not _matches(saved, expected) or not all(p in present or fileio.exists(p) for p in self.files):
            return None
        return saved

    def remove_temporaries(self) -> None:
        """Files of atomic writes that a killed run never renamed (Cloud Storage has none)."""
        for path in fileio.walk(self.directory):
            if fileio.TEMPORARY_RE.search(path):
                fileio.remove(path)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the folder's lease (creating the folder) for the block's writes; if the block fails
        having finished nothing (only scratch files written), remove those, and the folder if this
        run created it. A refused lease touches nothing."""
        with lease.hold(self.directory):
            self.remove_temporaries()
            try:
                yield
            except BaseException:
                self._clean_after_failure()
                raise

    def _clean_after_failure(self) -> None:
        """Remove the scratch files and emptied sub-folders; the lease (released next) removes the folder."""
        with contextlib.suppress(OSError, UserError):
            self.remove_temporaries()
            left = [p for p in fileio.walk(self.directory) if not lease.is_lease_file(p)]
            if not all(any(_same(p, s) for s in self.scratch) for p in left):
                return  # finished work (or files that are not ours): keep it for a resume
            for path in left:
                fileio.remove(path)
            if not fileio.is_gcs(self.directory):
                for root, _, _ in os.walk(self.directory, topdown=False):
                    if root != self.directory:
                        os.rmdir(root)
