"""`gs://` objects as files, for `fileio`: google-cloud-storage, every failure one `UserError`.

The stages read and write `gs://` through this module (training reads its records through
TensorFlow's own file system). Any access error (no credentials, no network, a missing
bucket, a refused permission) becomes one line naming the path and the fix, so every stage's
input and output flag fails the same way (and `errors(path)` around a TensorFlow `gs://` read
gives the same lines for its `tf.errors`). `STORAGE_EMULATOR_HOST` points the client at an
emulator without credentials (tests); `ELECTRA_GCS_RETRY_SECONDS` caps how long a failing
request is retried (default: the library's 120 s).
"""
from __future__ import annotations

import contextlib
import datetime
import fnmatch
import functools
import logging
import os
import re
import sys
import tempfile
from typing import IO, Iterator

from foundation.errors import UserError

LOGIN = "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a key file)"


def split(path: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, name = path[len("gs://"):].partition("/")
    if not bucket:
        raise UserError(f"no bucket name in {path}")
    return bucket, name.strip("/")


def describe(exc: BaseException, path: str) -> UserError | None:
    """The one line for a Cloud Storage failure on `path`, or None if `exc` is something else."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    bucket = split(path)[0]
    exc = _from_tensorflow(exc)
    if isinstance(exc, api.RetryError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, auth.DefaultCredentialsError):
        return UserError(f"no Google Cloud credentials to access {path}: {LOGIN}")
    if isinstance(exc, auth.RefreshError):
        return UserError(f"Google Cloud credentials were refused for {path}: {LOGIN}")
    if isinstance(exc, (api.Forbidden, api.Unauthorized)):
        return UserError(f"access to {path} refused: grant this account (on a TPU VM, the VM's service account) "
                         f"roles/storage.objectAdmin on gs://{bucket} (objectViewer to read only)")
    if isinstance(exc, api.NotFound):
        return UserError(f"bucket gs://{bucket} does not exist ({path}): fix the path or create it with "
                         f"`gcloud storage buckets create gs://{bucket}`")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, auth.TransportError, api.RetryError)):
        return UserError(f"cannot reach Cloud Storage for {path} ({type(exc).__name__}): check the network "
                         "(and STORAGE_EMULATOR_HOST if set)")
    if isinstance(exc, api.GoogleAPICallError):
        return UserError(f"Cloud Storage request for {path} failed: {exc.code} {exc.message}")
    return None


def _from_tensorflow(exc: BaseException) -> BaseException:
    """TensorFlow's own `gs://` file system (training reads records through it) fails with
    `tf.errors`; map them onto the client library's exceptions so they read the same."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(exc, tf.errors.OpError):
        return exc
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, tf.errors.PermissionDeniedError):
        return api.Forbidden(exc.message)
    if isinstance(exc, tf.errors.UnauthenticatedError):
        return auth.DefaultCredentialsError(exc.message)
    if isinstance(exc, tf.errors.NotFoundError):
        return api.NotFound(exc.message)
    if isinstance(exc, (tf.errors.FailedPreconditionError, tf.errors.UnavailableError,
                        tf.errors.DeadlineExceededError)) and ("libcurl" in exc.message or "HTTP" in exc.message):
        return requests.ConnectionError(exc.message)
    return exc


@contextlib.contextmanager
def errors(path: str) -> Iterator[None]:
    """Turn a Cloud Storage failure inside the block into the one-line `UserError` for `path`."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        error = describe(exc, path)
        if error is None:
            raise
        raise error from exc


def _client():
    return _client_for(os.environ.get("STORAGE_EMULATOR_HOST"))


@functools.cache
def _client_for(emulator: str | None):
    """One client per endpoint (tests start an emulator per module)."""
    from google.cloud import storage

    if emulator:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="emulator", credentials=AnonymousCredentials())
    # Without credentials google.auth logs a warning before raising; the raised error is the one line.
    auth_log = logging.getLogger("google.auth._default")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        return storage.Client()
    finally:
        auth_log.setLevel(level)


@functools.cache
def _retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    seconds = os.environ.get("ELECTRA_GCS_RETRY_SECONDS")
    return DEFAULT_RETRY.with_timeout(float(seconds)) if seconds else DEFAULT_RETRY


def _bucket(path: str):
    return _client().bucket(split(path)[0])


def _names(path: str, prefix: str, limit: int | None = None) -> list[str]:
    blobs = _client().list_blobs(split(path)[0], prefix=prefix, max_results=limit, retry=_retry(), timeout=60)
    return [b.name for b in blobs if not b.name.endswith("/")]


def isdir(path: str) -> bool:
    """A bucket, or a prefix with objects under it (Cloud Storage has no real folders)."""
    with errors(path):
        name = split(path)[1]
        return bool(_names(path, f"{name}/" if name else "", 1)) or not name


def exists(path: str) -> bool:
    with errors(path):
        if isdir(path):
            return True
        return _bucket(path).blob(split(path)[1]).exists(retry=_retry())


def check_access(path: str) -> None:
    """Fail now (credentials, bucket, permission) rather than at the first write."""
    with errors(path):
        _names(path, split(path)[1], 1)


def stat(path: str) -> tuple[int, int]:
    """(size, modification time in ns) of an object."""
    with errors(path):
        blob = _bucket(path).get_blob(split(path)[1], retry=_retry())
    if blob is None:
        raise UserError(f"input not found: {path}")
    updated = blob.updated or datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
    return int(blob.size or 0), int(updated.timestamp() * 1e9)


def glob(pattern: str) -> list[str]:
    """Objects matching `pattern`; `*` does not cross `/` (as `tf.io.gfile.glob`), `**` does."""
    bucket, name = split(pattern)
    prefix = re.split(r"[*?\[]", name, maxsplit=1)[0]
    with errors(pattern):
        names = _names(pattern, prefix)
    nested = "**" in name
    return [f"gs://{bucket}/{n}" for n in names
            if fnmatch.fnmatchcase(n, name) and (nested or n.count("/") == name.count("/"))]


def walk(path: str) -> list[str]:
    """Every object under a prefix."""
    bucket, name = split(path)
    with errors(path):
        return [f"gs://{bucket}/{n}" for n in _names(path, f"{name}/" if name else "")]


def remove(path: str) -> None:
    with errors(path):
        _bucket(path).blob(split(path)[1]).delete(retry=_retry())


def open_read(path: str) -> IO[bytes]:
    """A seekable binary reader of the object."""
    with errors(path):
        blob = _bucket(path).get_blob(split(path)[1], retry=_retry())
        if blob is None:
            raise UserError(f"input not found: {path}")
        return blob.open("rb")


@contextlib.contextmanager
def write(path: str, mode: str) -> Iterator[IO]:
    """Write to a local temporary file and upload it on success: a Cloud Storage object appears
    whole or not at all, so a failed or killed writer leaves nothing under `path`."""
    fd, local = tempfile.mkstemp(prefix="electra-gcs-")
    try:
        with open(fd, mode) as fh:
            yield fh
        with errors(path):
            _bucket(path).blob(split(path)[1]).upload_from_filename(local, retry=_retry())
    finally:
        os.remove(local)
