"""`foundation.fileio` on `gs://`, against gcp-storage-emulator: the same answers as for local paths."""
import gzip

import pytest

from foundation import fileio
from foundation.errors import UserError


@pytest.fixture()
def root(store, bucket) -> str:
    """A bucket holding a small corpus tree, written through fileio itself."""
    base = f"gs://{bucket}/corpus"
    fileio.write_text(f"{base}/a.txt", "one\ntwo\n")
    with fileio.atomic_write(f"{base}/sub/b.txt.gz") as fh:
        fh.write(gzip.compress("셋\n넷\n".encode()))
    fileio.write_text(f"{base}/sub/wiki_00", "다섯\n")
    fileio.write_text(f"{base}/stats.json", "{}")
    return base


def test_exists_and_isdir_treat_prefixes_as_folders(root):
    assert [fileio.exists(p) for p in (root, f"{root}/a.txt", f"{root}/sub", f"{root}/nope", f"{root}/a")] == [
        True, True, True, False, False]
    assert [fileio.isdir(p) for p in (root, f"{root}/a.txt", f"{root}/sub")] == [True, False, True]


def test_listing_reading_and_stat(root):
    assert fileio.list_text_files(root) == [f"{root}/a.txt", f"{root}/sub/b.txt.gz", f"{root}/sub/wiki_00"]
    assert list(fileio.iter_lines(f"{root}/sub/b.txt.gz")) == ["셋".encode(), "넷".encode()]
    assert fileio.stat(f"{root}/a.txt").size == 8 and fileio.stat(f"{root}/a.txt").mtime_ns > 0
    with fileio.open_read(f"{root}/a.txt") as fh:
        fh.seek(4)
        assert (fh.readline(), fh.tell()) == (b"two\n", 8)


def test_glob_star_stays_in_its_folder(root):
    assert fileio.glob(f"{root}/*.txt") == [f"{root}/a.txt"]
    assert fileio.glob(f"{root}/**.txt") == [f"{root}/a.txt"]
    assert fileio.glob(f"{root}/sub/*") == [f"{root}/sub/b.txt.gz", f"{root}/sub/wiki_00"]


def test_failed_write_leaves_no_object_and_remove_deletes(root):
    with pytest.raises(RuntimeError):
        with fileio.atomic_write(f"{root}/half.txt") as fh:
            fh.write(b"partial")
            raise RuntimeError("killed")
    assert not fileio.exists(f"{root}/half.txt")
    fileio.remove(f"{root}/a.txt")
    assert not fileio.exists(f"{root}/a.txt")


def test_missing_object_and_missing_bucket_are_one_line(root, bucket):
    with pytest.raises(UserError, match=rf"^input not found: {root}/nope\.txt$"):
        fileio.open_read(f"{root}/nope.txt")
    with pytest.raises(UserError, match=r"^bucket gs://no-such-bucket does not exist \(gs://no-such-bucket/x\): "):
        fileio.list_text_files("gs://no-such-bucket/x")
