"""Google Cloud Storage for the pipeline: folders up and down, in parallel, skip-if-same.

`tf.io.gfile` reads and writes `gs://` well, but copies one object at a time and re-sends
files that are already there. This module drives the `google-cloud-storage` client instead:
`transfer_manager` runs the transfers in parallel threads; files above 8 MiB go up in the
library's chunked resumable upload, which retries a dropped chunk from the offset the server
confirms; every object is CRC32C-checked on arrival. Objects whose size and CRC32C (or MD5)
already match are skipped, so after a killed run the same command sends only the files that
did not arrive. Credentials and the bucket are checked before the first byte moves, so a
mistake fails in seconds with one line.

    python -m cloudops.storage upload  runs/data/pretrain_tfrecords gs://BUCKET/RUN/pretrain_tfrecords
    python -m cloudops.storage download gs://BUCKET/RUN/export/NAME  export/NAME
    python -m cloudops.storage ls|check gs://BUCKET/RUN
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import re
import uuid
from typing import Any, Iterator, NamedTuple

from foundation import console
from foundation.errors import UserError, run_cli

MiB = 1 << 20
CHUNK_SIZE = 8 * MiB  # one request of a resumable upload; the API wants a multiple of 256 KiB
DEFAULT_WORKERS = 8
RETRY_SECONDS = 120.0  # how long a request is retried (dropped connections, 429, 5xx) before giving up
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_PARTIAL_RE = re.compile(r"\.tmp-[0-9a-f]{8}$")  # in-progress names (fileio.atomic_write's and ours)

log = logging.getLogger(__name__)


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
    bytes: int  # bytes of the files transferred


@dataclasses.dataclass(frozen=True)
class Storage:
    """An authenticated client and the retry policy every request uses."""

    client: Any  # google.cloud.storage.Client
    retry: Any  # google.api_core.retry.Retry


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


def key_file_problem(path: str, exc: Exception) -> str:
    """What is wrong with the key file `GOOGLE_APPLICATION_CREDENTIALS` names, in one line."""
    if not os.path.isfile(path):
        return (f"GOOGLE_APPLICATION_CREDENTIALS names {path}, which is not a file: point it at a "
                "service-account JSON key, or unset it and run `gcloud auth application-default login`")
    why = exc.args[0] if exc.args else str(exc)
    detail = exc.args[1] if len(exc.args) > 1 else exc.__cause__
    if detail is not None:
        why = f"{str(why).rstrip('.')}: {str(detail).rstrip('.')}"
    return (f"the key file {path} (GOOGLE_APPLICATION_CREDENTIALS) is not usable: {why}; "
            "download a new JSON key for the service account (IAM > Service accounts > Keys) "
            "or unset GOOGLE_APPLICATION_CREDENTIALS and run `gcloud auth application-default login`")


def connect(project: str | None = None, *, retry_seconds: float = RETRY_SECONDS) -> Storage:
    """A client whose credentials are proven now (token refreshed), not at the first upload.

    With `STORAGE_EMULATOR_HOST` set (tests, local emulators) no credentials are needed.
    """
    import google.auth
    from google.auth import exceptions as auth_errors
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import Request
    from google.cloud import storage
    from google.cloud.storage.retry import DEFAULT_RETRY

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        credentials, project = AnonymousCredentials(), project or "emulator"
    else:
        try:
            credentials, default_project = google.auth.default(scopes=[SCOPE])
            credentials.refresh(Request())
        except auth_errors.DefaultCredentialsError as exc:
            key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if key_file:
                raise UserError(key_file_problem(key_file, exc)) from exc
            raise UserError(
                "no Google Cloud credentials found: run `gcloud auth application-default login` "
                "(or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file)"
            ) from exc
        except auth_errors.RefreshError as exc:
            raise UserError(
                f"Google Cloud credentials were refused ({exc}): run `gcloud auth application-default login`"
            ) from exc
        project = project or default_project
    return Storage(storage.Client(project=project, credentials=credentials), DEFAULT_RETRY.with_timeout(retry_seconds))


def api_error(exc: Exception, uri: GcsUri) -> UserError:
    """One line for a failed request: a missing bucket, a refused access and a lost connection
    say how to fix them."""
    from google.api_core import exceptions as api
    from google.cloud.storage.exceptions import DataCorruption

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
    if isinstance(exc, DataCorruption):
        return UserError(f"a transfer to or from {uri} arrived corrupted (CRC32C differs): run the same command again")
    if isinstance(exc, api.GoogleAPICallError):
        return UserError(f"Cloud Storage request for {uri} failed: {exc}")
    cause = exc.__cause__ or getattr(exc, "cause", None) or exc  # a RetryError wraps the last failure
    return UserError(f"Cloud Storage unreachable for {uri} ({type(cause).__name__}): check the network, "
                     "then run the same command again (files already transferred are skipped)")


def _transfer_errors() -> tuple[type[Exception], ...]:
    """The exceptions `api_error` turns into one line."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_errors
    from google.cloud.storage.exceptions import DataCorruption

    return api.GoogleAPIError, DataCorruption, requests.RequestException, auth_errors.TransportError


def list_objects(store: Storage, uri: GcsUri) -> list[RemoteObject]:
    """Every object under a folder prefix (or the one object named), sorted by name.

    Raises a one-line `UserError` if the bucket is missing or not readable.
    """
    prefix = f"{uri.name}/" if uri.name else ""
    try:
        blobs = list(store.client.list_blobs(uri.bucket, prefix=prefix, retry=store.retry))
        if uri.name and not blobs:
            blobs = [b for b in store.client.list_blobs(uri.bucket, prefix=uri.name, retry=store.retry)
                     if b.name == uri.name]
    except _transfer_errors() as exc:
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


def _first_failure(results: list[Any]) -> Exception | None:
    return next((r for r in results if isinstance(r, Exception)), None)


def upload(store: Storage, local: str, uri: GcsUri, *, workers: int = DEFAULT_WORKERS,
           chunk_size: int = CHUNK_SIZE) -> TransferSummary:
    """Upload a folder (or one file) under `uri`, skipping objects that are already identical."""
    from google.cloud.storage import transfer_manager

    files = local_files(local)
    remote = {_relative(o.name, uri): o for o in list_objects(store, uri)}
    todo = [(p, rel) for p, rel in files if not (rel in remote and same_content(p, remote[rel]))]
    bucket = store.client.bucket(uri.bucket)
    pairs = [(path, bucket.blob(uri.child(rel).name, chunk_size=chunk_size)) for path, rel in todo]
    results = transfer_manager.upload_many(
        pairs, worker_type=transfer_manager.THREAD, max_workers=max(1, workers), raise_exception=False,
        upload_kwargs={"checksum": "crc32c", "retry": store.retry})
    failure = _first_failure(results)
    if failure is not None:
        raise api_error(failure, uri) from failure
    summary = TransferSummary(len(todo), len(files) - len(todo), sum(os.path.getsize(p) for p, _ in todo))
    log.info("uploaded %d files (%.1f MiB) to %s; %d already identical",
             summary.copied, summary.bytes / MiB, uri, summary.skipped)
    return summary


def download(store: Storage, uri: GcsUri, local: str, *, workers: int = DEFAULT_WORKERS) -> TransferSummary:
    """Download every object under `uri` into the folder `local`, skipping identical files.

    Each file arrives under a temporary name and is renamed once its CRC32C is verified, so a
    killed run leaves no half-written file under a real name.
    """
    from google.cloud.storage import transfer_manager

    objects = list_objects(store, uri)
    if not objects:
        raise UserError(f"nothing to download: no objects under {uri}")
    todo = [o for o in objects if not same_content(os.path.join(local, _relative(o.name, uri)), o)]
    bucket = store.client.bucket(uri.bucket)
    targets = [os.path.join(local, _relative(o.name, uri)) for o in todo]
    partials = [f"{t}.tmp-{uuid.uuid4().hex[:8]}" for t in targets]
    for target in targets:
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    results = transfer_manager.download_many(
        [(bucket.blob(o.name), p) for o, p in zip(todo, partials)], worker_type=transfer_manager.THREAD,
        max_workers=max(1, workers), raise_exception=False,
        download_kwargs={"checksum": "crc32c", "retry": store.retry})
    for result, partial, target in zip(results, partials, targets):
        if isinstance(result, Exception):
            if os.path.exists(partial):
                os.remove(partial)
        else:
            os.replace(partial, target)
    failure = _first_failure(results)
    if failure is not None:
        raise api_error(failure, uri) from failure
    summary = TransferSummary(len(todo), len(objects) - len(todo), sum(o.size for o in todo))
    log.info("downloaded %d files (%.1f MiB) from %s; %d already identical", summary.copied,
             summary.bytes / MiB, uri, summary.skipped)
    return summary


def iter_listing(bucket: str, objects: list[RemoteObject]) -> Iterator[str]:
    for o in objects:
        yield f"{o.size:>14,d}  {o.crc32c or '-':<10}  gs://{bucket}/{o.name}"


def main(argv: list[str] | None = None) -> int:
    parser = console.parser(prog="electra-gcs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", help="billing project (default: from the credentials)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", formatter_class=console.HelpFormatter,
                        help="upload a folder or file under a gs:// prefix (identical objects skipped)")
    up.add_argument("local", help="local folder or file")
    up.add_argument("uri", help="gs://BUCKET/PREFIX")
    down = sub.add_parser("download", formatter_class=console.HelpFormatter,
                          help="download everything under a gs:// prefix into a folder")
    down.add_argument("uri", help="gs://BUCKET/PREFIX")
    down.add_argument("local", help="local folder")
    for p in (up, down):
        p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="parallel transfers")
    sub.add_parser("ls", help="list objects under a gs:// prefix").add_argument("uri", help="gs://BUCKET/PREFIX")
    sub.add_parser("check", help="check credentials and that a gs:// prefix is listable").add_argument(
        "uri", help="gs://BUCKET/PREFIX")
    args = parser.parse_args(argv)

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
