"""A stand-in for a TPU VM's GCE metadata server, on 127.0.0.1, for the tests that decide which TPU a
client may drive (test_tpu_host, test_distribute, test_doctor).

It answers `/computeMetadata/v1/instance/attributes/KEY` as the real server does (the
`Metadata-Flavor: Google` header asked and answered, 404 for an unknown key). Point
`GCE_METADATA_IP` at it; `nothing_listening()` is an address where no server answers (off a TPU VM).
"""
import contextlib
import http.server
import socket
import threading

PREFIX = "/computeMetadata/v1/instance/attributes/"


def tpu_vm(accelerator_type: str, worker: int) -> dict[str, str]:
    """The attributes a TPU VM host of `accelerator_type` shows (the ones tpu_host reads)."""
    return {"accelerator-type": accelerator_type, "agent-worker-number": str(worker)}


@contextlib.contextmanager
def metadata_server(attributes: dict[str, str], flavor: str = "Google"):
    """Serve `attributes`; yields the server's "127.0.0.1:PORT"."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            key = self.path[len(PREFIX):] if self.path.startswith(PREFIX) else None
            if self.headers.get("Metadata-Flavor") != "Google" or key not in attributes:
                self.send_error(404 if self.headers.get("Metadata-Flavor") == "Google" else 403)
                return
            body = attributes[key].encode()
            self.send_response(200)
            self.send_header("Metadata-Flavor", flavor)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serve(Handler) as address:
        yield address


@contextlib.contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler]):
    """`handler` answering on 127.0.0.1 in a thread; yields its address ("127.0.0.1:PORT")."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def nothing_listening() -> str:
    """A 127.0.0.1 address with no server: a connection there is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"
