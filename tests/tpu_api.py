"""A stand-in, on 127.0.0.1, for what `TPUClusterResolver(tpu=NAME)` asks on worker 0 of a pod slice.

TensorFlow's Cloud TPU client (tensorflow/python/tpu/client) reads the project and zone from the
GCE metadata server, takes the VM's service-account token through oauth2client (which first checks
that the metadata server answers as Google's does), fetches the TPU API's discovery document and
asks `projects.locations.nodes.get` for the TPU's network endpoints. One server answers all of it,
as the real ones do (the `Metadata-Flavor: Google` header asked and answered, the API only with
the metadata server's token). Point GCE_METADATA_IP, GCE_METADATA_ROOT and TPU_API_DISCOVERY_URL
at it (`client_env`); every request is recorded in `requests`.
"""
import contextlib
import http.server
import json

from tpu_metadata import serve

TOKEN = "stand-in-token"
META = "/computeMetadata/v1/"
EMAIL = "tpu-vm@{project}.iam.gserviceaccount.com"


def discovery_document(root: str) -> dict:
    """The part of the Cloud TPU API v1 discovery document the client uses: nodes.get."""
    get = {"id": "tpu.projects.locations.nodes.get", "path": "v1/{+name}", "httpMethod": "GET",
           "parameters": {"name": {"location": "path", "required": True, "type": "string",
                                   "pattern": "^projects/[^/]+/locations/[^/]+/nodes/[^/]+$"}},
           "parameterOrder": ["name"], "response": {"$ref": "Node"}}
    return {"kind": "discovery#restDescription", "discoveryVersion": "v1", "id": "tpu:v1", "name": "tpu",
            "version": "v1", "rootUrl": root, "servicePath": "", "baseUrl": root, "batchPath": "batch",
            "parameters": {}, "schemas": {"Node": {"id": "Node", "type": "object"}},
            "resources": {"projects": {"resources": {"locations": {"resources": {
                "nodes": {"methods": {"get": get}}}}}}}}


def pod_node(project: str, zone: str, name: str, hosts: int, state: str = "READY") -> dict:
    """A v3 slice's node as the API returns it: one endpoint per host (loopback addresses here)."""
    return {"name": f"projects/{project}/locations/{zone}/nodes/{name}", "state": state, "health": "HEALTHY",
            "acceleratorType": f"v3-{8 * hosts}", "tensorflowVersion": "tpu-vm-tf-2.18.0-pod-se",
            "networkEndpoints": [{"ipAddress": f"127.0.0.{2 + i}", "port": 8470} for i in range(hosts)]}


@contextlib.contextmanager
def tpu_api(project: str, zone: str, nodes: list[dict]):
    """Serve the metadata of a VM in `project`/`zone` and the TPU API with `nodes`; yields
    (address "127.0.0.1:PORT", the list of (method, path, authorization) it was asked)."""
    requests: list[tuple[str, str, str | None]] = []
    by_name = {n["name"]: n for n in nodes}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body, flavor: bool = False):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            if flavor:
                self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (the http.server API)
            requests.append(("GET", self.path, self.headers.get("Authorization")))
            path = self.path.split("?")[0]
            # the metadata server names the VM's service account "default" and by its email alike
            path = path.replace(f"/service-accounts/{EMAIL.format(project=project)}/", "/service-accounts/default/")
            root = f"http://{self.headers['Host']}/"
            if path == "/" or path.startswith(META):
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self._send(403, b"missing Metadata-Flavor")
                answers = {
                    "/": b"computeMetadata/",
                    META + "project/project-id": project.encode(),
                    META + "instance/zone": f"projects/123456/zones/{zone}".encode(),
                    META + "instance/service-accounts/default/": {
                        "email": EMAIL.format(project=project), "aliases": ["default"],
                        "scopes": ["https://www.googleapis.com/auth/cloud-platform"]},
                    META + "instance/service-accounts/default/token": {
                        "access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"},
                }
                return self._send(200, answers[path], flavor=True) if path in answers else self._send(404, b"")
            if path == "/discovery/tpu/v1":
                return self._send(200, discovery_document(root))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"error": {"code": 401, "message": "no credentials"}})
            name = path[len("/v1/"):]
            if name in by_name:
                return self._send(200, by_name[name])
            return self._send(404, {"error": {"code": 404, "message": f"{name} not found"}})

        def log_message(self, *args):
            pass

    with serve(Handler) as address:
        yield address, requests


def client_env(address: str, config_dir: str) -> dict[str, str]:
    """The environment that sends the resolver's client to the stand-in (and to no credentials file)."""
    return {"GCE_METADATA_IP": address, "GCE_METADATA_ROOT": address,
            "TPU_API_DISCOVERY_URL": f"http://{address}/discovery/tpu/v1", "CLOUDSDK_CONFIG": config_dir,
            "NO_GCE_CHECK": "False"}
