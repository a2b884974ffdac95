"""Google Cloud Storage for the pipeline: folders up and down, resumable, skip-if-same.

`tf.io.gfile` reads and writes `gs://` well, but copies one object at a time, cannot resume
a large upload after a crash, and re-sends files that are already there. This module uses
the `google-cloud-storage` client instead: parallel transfers; large files go through a
resumable session whose URL is kept on disk, so a rerun continues where a killed one
stopped; objects whose size and CRC32C (or MD5) already match are skipped. Credentials and
the bucket are checked before the first byte moves, so a mistake fails in seconds.

    python -m cloudops.storage upload  runs/data/pretrain_tfrecords gs://BUCKET/RUN/pretrain_tfrecords
    python -m cloudops.storage download gs://BUCKET/RUN/export/NAME  export/NAME
    python -m cloudops.storage ls|check gs://BUCKET/RUN
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import re
from typing import Any, Callable, Iterator, NamedTuple

from foundation import fileio
from foundation.errors import UserError, run_cli

MiB = 1 << 20
CHUNK_SIZE = 8 * MiB  # one resumable request; the API wants a multiple of 256 KiB
RESUMABLE_THRESHOLD = 16 * MiB  # files at least this big use a session that survives a restart
DEFAULT_WORKERS = 8
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_PARTIAL_RE = re.compile(r"\.tmp-[0-9a-f]{8}$")  # fileio.atomic_write's in-progress names
_RANGE_RE = re.compile(r"bytes=0-(\d+)")

log = logging.getLogger(__name__)
Progress = Callable[[int], None]  # called with the number of bytes just transferred


class GcsUri(NamedTuple):
    """`gs://bucket/name`: `name` is an object name or a folder prefix, without slashes at the ends."""

    bucket: str
    name: str

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}" if self.name else f"gs://{self.bucket}"

    def child(self, relative: str) -> "GcsUri":
        return GcsUri(self.bucket, f"{self.name}/{relative}" if self.name else relative)


class RemoteObject(NamedTuple):
    name: str  # full object name
    size: int
    crc32c: str | None  # base64, as the JSON API reports it
    md5: str | None  # base64; absent for composite objects


class TransferSummary(NamedTuple):
    copied: int  # files transferred
    skipped: int  # files already identical at the destination
    bytes: int  # bytes sent or received in this run (a resumed upload counts only the rest)


@dataclasses.dataclass(frozen=True)
class Storage:
    """An authenticated client plus a raw session for the resumable-upload protocol."""

    client: Any  # google.cloud.storage.Client
    session: Any  # google.auth.transport.requests.AuthorizedSession


def parse_uri(uri: str) -> GcsUri:
    if not uri.startswith("gs://"):
        raise UserError(f"not a gs:// path: {uri}")
    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket:
        raise UserError(f"no bucket name in {uri}")
    return GcsUri(bucket, name.strip("/"))


def file_checksums(path: str) -> tuple[str, str]:
    """(CRC32C, MD5) of a local file, base64-encoded the way Cloud Storage reports them."""
    import google_crc32c

    crc, md5 = google_crc32c.Checksum(), hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(MiB), b""):
            crc.update(block)
            md5.update(block)
    return base64.b64encode(crc.digest()).decode(), base64.b64encode(md5.digest()).decode()


def same_content(path: str, remote: RemoteObject) -> bool:
    """True when the local file has the object's size and checksum (CRC32C, else MD5)."""
    if not os.path.isfile(path) or os.path.getsize(path) != remote.size:
        return False
    crc32c, md5 = file_checksums(path)
    if remote.crc32c:
        return crc32c == remote.crc32c
    return remote.md5 is not None and md5 == remote.md5


def connect(project: str | None = None) -> Storage:
    """A client whose credentials are proven now (token refreshed), not at the first upload.

    With `STORAGE_EMULATOR_HOST` set (tests, local emulators) no credentials are needed.
    """
    import google.auth
    from google.auth import exceptions as auth_errors
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import AuthorizedSession, Request
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        credentials, project = AnonymousCredentials(), project or "emulator"
    else:
        try:
            credentials, default_project = google.auth.default(scopes=[SCOPE])
            credentials.refresh(Request())
        except auth_errors.DefaultCredentialsError as exc:
            raise UserError(
                "no Google Cloud credentials found: run `gcloud auth application-default login` "
                "(or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file)"
            ) from exc
        except auth_errors.RefreshError as exc:
            raise UserError(
                f"Google Cloud credentials were refused ({exc}): run `gcloud auth application-default login`"
            ) from exc
        project = project or default_project
    return Storage(storage.Client(project=project, credentials=credentials), AuthorizedSession(credentials))


def api_error(exc: Exception, uri: GcsUri) -> UserError:
    """One line for a failed API call: a missing bucket and a refused access say how to fix them."""
    from google.api_core import exceptions as api

    if isinstance(exc, api.NotFound):
        return UserError(
            f"bucket gs://{uri.bucket} does not exist: create it with "
            f"`gcloud storage buckets create gs://{uri.bucket} --location=REGION` (the TPU zone's region)"
        )
    if isinstance(exc, api.Forbidden):
        return UserError(
            f"access to {uri} refused: grant this account (on a TPU VM, the VM's service account) "
            f"roles/storage.objectAdmin on gs://{uri.bucket}"
        )
    return UserError(f"Cloud Storage request for {uri} failed: {exc}")


def list_objects(store: Storage, uri: GcsUri) -> list[RemoteObject]:
    """Every object under a folder prefix (or the one object named), sorted by name.

    Raises a one-line `UserError` if the bucket is missing or not readable.
    """
    from google.api_core import exceptions as api

    prefix = f"{uri.name}/" if uri.name else ""
    try:
        blobs = list(store.client.list_blobs(uri.bucket, prefix=prefix))
        if uri.name and not blobs:
            blobs = [b for b in store.client.list_blobs(uri.bucket, prefix=uri.name) if b.name == uri.name]
    except api.GoogleAPICallError as exc:
        raise api_error(exc, uri) from exc
    return sorted(
        (RemoteObject(b.name, int(b.size or 0), b.crc32c, b.md5_hash) for b in blobs if not b.name.endswith("/")),
        key=lambda o: o.name,
    )


def _relative(name: str, uri: GcsUri) -> str:
    return name[len(uri.name) + 1:] if uri.name and name != uri.name else os.path.basename(name)


def local_files(path: str) -> list[tuple[str, str]]:
    """(local path, relative name with `/`) for a file, or for every file under a folder.

    Temporary files of an unfinished atomic write are left out.
    """
    if os.path.isfile(path):
        return [(path, os.path.basename(path))]
    if not os.path.isdir(path):
        raise UserError(f"nothing to upload: {path} does not exist")
    found = [
        (full, os.path.relpath(full, path).replace(os.sep, "/"))
        for root, _, names in os.walk(path)
        for full in (os.path.join(root, n) for n in names)
        if not _PARTIAL_RE.search(full)
    ]
    if not found:
        raise UserError(f"nothing to upload: {path} is empty")
    return sorted(found, key=lambda pair: pair[1])


# --- resumable uploads -------------------------------------------------------------------

def _session_file(state_dir: str, path: str, uri: GcsUri) -> str:
    key = hashlib.sha256(f"{os.path.abspath(path)}\n{uri}".encode()).hexdigest()[:32]
    return os.path.join(state_dir, f"{key}.json")


def default_state_dir() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "electra-pipeline", "gcs-uploads")


def _saved_session(state_file: str, stat: os.stat_result) -> str | None:
    """The session URL saved by an earlier run for this exact file version, if any."""
    try:
        with open(state_file, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (OSError, ValueError):
        return None
    if saved.get("size") != stat.st_size or saved.get("mtime_ns") != stat.st_mtime_ns:
        return None  # the file changed since: its old session is useless
    return saved.get("url")


def _put(store: Storage, url: str, data: bytes, content_range: str, what: str) -> Any:
    """One request of the resumable protocol; a dropped connection becomes a one-line error."""
    import requests
    from google.auth import exceptions as auth_errors

    try:
        return store.session.put(url, data=data, headers={"Content-Range": content_range})
    except (requests.RequestException, auth_errors.TransportError) as exc:
        raise UserError(f"{what} interrupted ({type(exc).__name__}): "
                        "run the same command again to resume where it stopped") from exc


def _confirmed_range(resp: Any) -> int:
    """The byte count a 308 reply confirms (`Range: bytes=0-N`; no header = nothing yet)."""
    match = _RANGE_RE.match(resp.headers.get("Range", ""))
    return int(match.group(1)) + 1 if match else 0


def _confirmed_offset(store: Storage, url: str, size: int, what: str) -> int | None:
    """Bytes the server holds for a session; None if the session expired or is unknown."""
    resp = _put(store, url, b"", f"bytes */{size}", what)
    if resp.status_code in (200, 201):
        return size
    if resp.status_code == 308:
        return _confirmed_range(resp)
    if resp.status_code in (404, 410):
        return None
    raise UserError(f"{what}: resuming failed: HTTP {resp.status_code} {resp.text[:200]}")


def _resumable_upload(store: Storage, path: str, uri: GcsUri, state_dir: str,
                      chunk_size: int, progress: Progress) -> int:
    """Send a large file in chunks through a session that a later run can pick up; bytes sent."""
    stat = os.stat(path)
    what = f"upload of {path} to {uri}"
    state_file = _session_file(state_dir, path, uri)
    url = _saved_session(state_file, stat)
    offset = _confirmed_offset(store, url, stat.st_size, what) if url else None
    if url is None or offset is None:
        blob = store.client.bucket(uri.bucket).blob(uri.name)
        url = blob.create_resumable_upload_session(size=stat.st_size, client=store.client)
        offset = 0
        os.makedirs(state_dir, exist_ok=True)
        with fileio.atomic_write(state_file, "w") as fh:
            json.dump({"url": url, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "uri": str(uri)}, fh)
    elif offset:
        log.info("resuming %s at byte %d of %d", uri, offset, stat.st_size)
    sent = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        while offset < stat.st_size:
            data = fh.read(chunk_size)
            end = offset + len(data) - 1
            resp = _put(store, url, data, f"bytes {offset}-{end}/{stat.st_size}", what)
            if resp.status_code not in (200, 201, 308):
                raise UserError(f"{what} failed: HTTP {resp.status_code} {resp.text[:200]}")
            new_offset = stat.st_size if resp.status_code != 308 else _confirmed_range(resp)
            sent += new_offset - offset
            progress(new_offset - offset)
            offset = new_offset
            fh.seek(offset)
    os.remove(state_file)
    remote = store.client.bucket(uri.bucket).get_blob(uri.name)
    if remote is None or not same_content(path, RemoteObject(remote.name, int(remote.size), remote.crc32c, remote.md5_hash)):
        raise UserError(f"{what} arrived corrupted (size or CRC32C differ): run the upload again")
    return sent


def upload_file(store: Storage, path: str, uri: GcsUri, *, state_dir: str | None = None,
                chunk_size: int = CHUNK_SIZE, resumable_threshold: int = RESUMABLE_THRESHOLD,
                progress: Progress = lambda n: None) -> int:
    """Upload one file to one object, CRC32C-checked; returns the bytes sent in this call."""
    size = os.path.getsize(path)
    if size >= resumable_threshold:
        return _resumable_upload(store, path, uri, state_dir or default_state_dir(), chunk_size, progress)
    store.client.bucket(uri.bucket).blob(uri.name).upload_from_filename(path, checksum="crc32c")
    progress(size)
    return size


def _run_parallel(jobs: list[Callable[[], int]], workers: int) -> int:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(f.result() for f in [pool.submit(job) for job in jobs])


def _progress_bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


def upload(store: Storage, local: str, uri: GcsUri, *, workers: int = DEFAULT_WORKERS,
           state_dir: str | None = None, chunk_size: int = CHUNK_SIZE,
           resumable_threshold: int = RESUMABLE_THRESHOLD) -> TransferSummary:
    """Upload a folder (or one file) under `uri`, skipping objects that are already identical."""
    from google.api_core import exceptions as api

    files = local_files(local)
    remote = {_relative(o.name, uri): o for o in list_objects(store, uri)}
    todo = [(p, rel) for p, rel in files if not (rel in remote and same_content(p, remote[rel]))]
    bar = _progress_bar(sum(os.path.getsize(p) for p, _ in todo), f"upload {uri}")
    try:
        def job(path: str, rel: str) -> Callable[[], int]:
            return lambda: upload_file(store, path, uri.child(rel), state_dir=state_dir, chunk_size=chunk_size,
                                       resumable_threshold=resumable_threshold, progress=bar.update)
        sent = _run_parallel([job(p, rel) for p, rel in todo], workers)
    except api.GoogleAPICallError as exc:
        raise api_error(exc, uri) from exc
    finally:
        bar.close()
    summary = TransferSummary(len(todo), len(files) - len(todo), sent)
    log.info("uploaded %d files (%.1f MiB) to %s; %d already identical", summary.copied, sent / MiB, uri, summary.skipped)
    return summary


def download(store: Storage, uri: GcsUri, local: str, *, workers: int = DEFAULT_WORKERS) -> TransferSummary:
    """Download every object under `uri` into the folder `local`, skipping identical files.

    Each file is written to a temporary name and renamed once its checksum is verified.
    """
    from google.api_core import exceptions as api

    objects = list_objects(store, uri)
    if not objects:
        raise UserError(f"nothing to download: no objects under {uri}")
    bucket = store.client.bucket(uri.bucket)
    todo = [o for o in objects if not same_content(os.path.join(local, _relative(o.name, uri)), o)]
    bar = _progress_bar(sum(o.size for o in todo), f"download {uri}")

    def job(obj: RemoteObject) -> Callable[[], int]:
        def fetch() -> int:
            with fileio.atomic_write(os.path.join(local, _relative(obj.name, uri))) as fh:
                bucket.blob(obj.name).download_to_file(fh, checksum="crc32c" if obj.crc32c else "md5")
            bar.update(obj.size)
            return obj.size
        return fetch

    try:
        received = _run_parallel([job(o) for o in todo], workers)
    except api.GoogleAPICallError as exc:
        raise api_error(exc, uri) from exc
    finally:
        bar.close()
    summary = TransferSummary(len(todo), len(objects) - len(todo), received)
    log.info("downloaded %d files (%.1f MiB) from %s; %d already identical", summary.copied,
             received / MiB, uri, summary.skipped)
    return summary


def iter_listing(bucket: str, objects: list[RemoteObject]) -> Iterator[str]:
    for o in objects:
        yield f"{o.size:>14,d}  {o.crc32c or '-':<10}  gs://{bucket}/{o.name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudops.storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", help="billing project (default: from the credentials)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="upload a folder or file under a gs:// prefix (identical objects skipped)")
    up.add_argument("local")
    up.add_argument("uri")
    down = sub.add_parser("download", help="download everything under a gs:// prefix into a folder")
    down.add_argument("uri")
    down.add_argument("local")
    for p in (up, down):
        p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="parallel transfers")
    sub.add_parser("ls", help="list objects under a gs:// prefix").add_argument("uri")
    sub.add_parser("check", help="check credentials and that a gs:// prefix is listable").add_argument("uri")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    store = connect(args.project)
    if args.command == "upload":
        s = upload(store, args.local, parse_uri(args.uri), workers=args.workers)
        print(f"uploaded {s.copied} files ({s.bytes / MiB:.1f} MiB), skipped {s.skipped} identical: {args.uri}")
    elif args.command == "download":
        s = download(store, parse_uri(args.uri), args.local, workers=args.workers)
        print(f"downloaded {s.copied} files ({s.bytes / MiB:.1f} MiB), skipped {s.skipped} identical: {args.local}")
    else:
        uri = parse_uri(args.uri)
        objects = list_objects(store, uri)
        if args.command == "ls":
            for line in iter_listing(uri.bucket, objects):
                print(line)
        print(f"{args.uri}: {len(objects)} objects, {sum(o.size for o in objects) / MiB:.1f} MiB")
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
