"""A real gcp-storage-emulator for the Cloud Storage tests (test_storage, test_doctor).

`tests/conftest.py` makes the fixtures `emulator_host`, `store` and `bucket` available to every test.
"""
import socket
import subprocess
import sys
import time
import uuid

import pytest

from cloudops import storage


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def emulator_host():
    """A gcp-storage-emulator process on 127.0.0.1 with a free port (in memory), its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("gcp-storage-emulator did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture()
def store(emulator_host, monkeypatch) -> storage.Storage:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_host)
    return storage.connect()


@pytest.fixture()
def bucket(store) -> str:
    """A fresh, empty bucket's name."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    store.client.create_bucket(name)
    return name
