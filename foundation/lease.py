"""One writer per folder: a lease file that only one process can hold at a time.

Every stage output (through `foundation.stage_output`), the demo's `--out-dir` and every model
dir of a training run are written under a lease: `FOLDER/.lease.json` holding the owner's id,
host, pid, start time and heartbeat time. A background thread renews the heartbeat every
`ELECTRA_LEASE_HEARTBEAT_SECONDS` (default 30 s); a lease whose heartbeat is older than
`ELECTRA_LEASE_EXPIRY_SECONDS` (default 3 heartbeats, 90 s) was left by a killed run and is
taken over with a warning; so is one whose holder ran on this host and whose process is gone
(no need to wait after a `kill -9`). A second writer while the lease is live gets one line naming the
holder. The lease is released (the file removed) when the block ends, cleanly or by an error.

Creating and renewing are atomic where the folder is: locally the file is created with
`O_CREAT | O_EXCL`; on Cloud Storage the object is created with the precondition
`if_generation_match=0` and renewed or taken over only at the generation last seen, so two
VMs cannot both hold it. (Locally a renewal or take-over compares the content it read before
replacing the file: a tiny window that only a holder silent for a whole expiry can hit.)
Clocks: the heartbeat age is measured with this host's clock against the holder's, so hosts
sharing a gs:// folder need clocks within a fraction of the expiry (NTP gives milliseconds).
Readers (export, eval, probe) never take a lease.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Iterator, NamedTuple

from foundation import fileio
from foundation.errors import UserError

LEASE_FILE = ".lease.json"
log = logging.getLogger("electra.lease")


def heartbeat_seconds() -> float:
    return float(os.environ.get("ELECTRA_LEASE_HEARTBEAT_SECONDS", "30"))


def expiry_seconds() -> float:
    """How old a heartbeat may be before the lease counts as abandoned (3 heartbeats by default)."""
    return float(os.environ.get("ELECTRA_LEASE_EXPIRY_SECONDS", str(3 * heartbeat_seconds())))


def lease_path(directory: str) -> str:
    return fileio.join(directory, LEASE_FILE)


def is_lease_file(path: str) -> bool:
    return os.path.basename(path.rstrip("/")) == LEASE_FILE


@dataclasses.dataclass(frozen=True)
class Holder:
    """The content of a lease file."""

    owner: str
    host: str
    pid: int
    started: float  # seconds since the epoch
    heartbeat: float

    def to_bytes(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Holder | None:
        """None for a file that is not (yet) a whole lease: one being created, or garbage."""
        try:
            raw = json.loads(data.decode("utf-8"))
            return cls(str(raw["owner"]), str(raw["host"]), int(raw["pid"]), float(raw["started"]),
                       float(raw["heartbeat"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None

    def describe(self, now: float) -> str:
        started = datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return (f"host {self.host}, pid {self.pid}, started {started} UTC, "
                f"last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago")


def _process_gone(holder: Holder) -> bool:
    """The holder ran on this host and its process no longer exists (a `kill -9`, an OOM kill): its
    lease need not wait for the expiry. On another host nothing can be known but the heartbeat."""
    if holder.host != socket.gethostname() or holder.pid <= 0:
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Seen(NamedTuple):
    """A lease file's content and what a conditional replace must match (local: the bytes; gs://: generation)."""

    data: bytes
    token: object


class _Local:
    def __init__(self, path: str):
        self.path = path

    def read(self) -> Seen | None:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        return Seen(data, data)

    def create(self, data: bytes) -> object | None:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return data

    def replace(self, data: bytes, token: object) -> object | None:
        seen = self.read()
        if seen is None or seen.token != token:
            return None
        with fileio.atomic_write(self.path, "wb") as fh:
            fh.write(data)
        return data

    def delete(self, token: object) -> None:
        seen = self.read()
        if seen is not None and seen.token == token:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


class _Gcs:
    """A lease object changed only at the generation last seen (412 Precondition Failed otherwise)."""

    def __init__(self, path: str):
        from foundation import gcs

        self.path = path
        self.gcs = gcs
        self.blob_name = gcs.split(path)[1]

    def _blob(self):
        return self.gcs._bucket(self.path).blob(self.blob_name)

    def read(self) -> Seen | None:
        from google.api_core import exceptions as api

        with self.gcs.errors(self.path):
            blob = self.gcs._bucket(self.path).get_blob(self.blob_name)
            if blob is None:
                return None
            generation = blob.generation  # read first: a download resets it from its response headers
            try:
                return Seen(blob.download_as_bytes(if_generation_match=generation), generation)
            except (api.NotFound, api.PreconditionFailed):  # changed or removed since listed
                return self.read()

    def _upload(self, data: bytes, generation: int) -> object | None:
        from google.api_core import exceptions as api

        blob = self._blob()
        with self.gcs.errors(self.path):
            try:
                blob.upload_from_string(data, content_type="application/json", if_generation_match=generation)
            except api.PreconditionFailed:
                return None
        return blob.generation

    def create(self, data: bytes) -> object | None:
        return self._upload(data, 0)  # 0: only if no live object has this name

    def replace(self, data: bytes, token: object) -> object | None:
        return self._upload(data, int(token))  # type: ignore[arg-type]

    def delete(self, token: object) -> None:
        from google.api_core import exceptions as api

        with self.gcs.errors(self.path), contextlib.suppress(api.NotFound, api.PreconditionFailed):
            self._blob().delete(if_generation_match=int(token))  # type: ignore[arg-type]


class Lease:
    """A held lease on one folder; renewed by a daemon thread until `release`."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = lease_path(directory)
        self._store = _Gcs(self.path) if fileio.is_gcs(self.path) else _Local(self.path)
        self._holder = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), time.time(), time.time())
        self._token: object | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # who took the lease over, once another writer did

    def _renewed(self) -> Holder:
        return dataclasses.replace(self._holder, heartbeat=time.time())

    def acquire(self) -> Lease:
        """Take the lease (a stale one is taken over with a warning) or raise the one line naming its holder."""
        expiry = expiry_seconds()
        for _ in range(5):  # another writer changed the file between our read and our write: look again
            seen = self._store.read()
            if seen is None:
                self._token = self._store.create(self._holder.to_bytes())
                if self._token is not None:
                    break
                continue
            holder = Holder.from_bytes(seen.data)
            now = time.time()
            if holder is None:  # being created this instant, or garbage: judge it by age once more
                time.sleep(0.2)
                again = self._store.read()
                if again is None or again.data != seen.data:
                    continue
                holder = Holder("?", "unknown", 0, now, 0.0)
            gone = _process_gone(holder)
            if now - holder.heartbeat <= expiry and not gone:
                raise UserError(f"{self.directory} is being written by another run ({holder.describe(now)}); "
                                f"wait for it to end, or stop it: its lease {self.path} expires {expiry:g} s after "
                                "its last heartbeat")
            self._token = self._store.replace(self._renewed().to_bytes(), seen.token)
            if self._token is not None:
                why = "its process is gone on this host" if gone else f"it stopped renewing it over {expiry:g} s ago"
                log.warning("took over the lease %s of a killed run (%s): %s", self.path, holder.describe(now), why)
                break
        else:
            raise UserError(f"could not take the lease {self.path}: other writers keep changing it")
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.path}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        period = heartbeat_seconds()
        while not self._stop.wait(period):
            try:
                token = self._store.replace(self._renewed().to_bytes(), self._token)
            except Exception as exc:  # noqa: BLE001  (a network blip: the next beat retries)
                log.warning("could not renew the lease %s: %s", self.path, exc)
                continue
            if token is None:
                seen = self._store.read()
                holder = Holder.from_bytes(seen.data) if seen else None
                self.lost = holder.describe(time.time()) if holder else "unknown holder"
                log.error("lost the lease %s: another run took it over; this run stops writing there", self.path)
                return
            self._token = token

    def check(self) -> None:
        """Raise if another writer took the lease over (this run was silent for longer than the expiry)."""
        if self.lost:
            raise UserError(f"another run took over {self.directory} ({self.lost}) after this run "
                            f"did not renew it for {expiry_seconds():g} s; this run stopped writing there")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._token is not None and not self.lost:
            self._store.delete(self._token)
        self._token = None


@contextlib.contextmanager
def hold(directory: str) -> Iterator[Lease]:
    """Hold the lease on `directory` (created if needed) for the block; released at its end, even on error.

    A folder this call created is removed again if nothing but the lease was written into it, so a
    refused or failed start leaves nothing behind.
    """
    created = not fileio.is_gcs(directory) and not os.path.exists(directory)
    fileio.makedirs(directory)
    try:
        lease = Lease(directory).acquire()
        try:
            yield lease
        finally:
            lease.release()
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(directory)
