"""Worker 0 of a pod slice resolves the TPU by its name: TPUClusterResolver(tpu=NAME) with the `pod`
extra's libraries (google-api-python-client + oauth2client), against a local stand-in of the metadata
server and the Cloud TPU API (tests/tpu_api.py). The real client code runs; nothing leaves 127.0.0.1."""
import json
import os
import subprocess
import sys

import pytest

from tpu_api import TOKEN, client_env, pod_node, tpu_api

RESOLVE = """
import json, sys
import tensorflow as tf
for tpu, zone, project in json.loads(sys.argv[1]):
    try:
        r = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu, zone=zone, project=project)
        print(json.dumps({"master": r.master(), "cluster": r.cluster_spec().as_dict()}))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""


def resolve(address: str, tmp_path, *lookups: tuple) -> list[dict]:
    """Each (tpu, zone, project) resolved by a TensorFlow client process, as worker 0 runs it."""
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(client_env(address, str(tmp_path)), TPU_LOAD_LIBRARY="0")
    proc = subprocess.run([sys.executable, "-c", RESOLVE, json.dumps(lookups)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()[-len(lookups):]]


def test_the_resolver_finds_every_host_of_a_v3_32_by_its_name(tmp_path):
    nodes = [pod_node("proj-1", "europe-west4-a", "my-pod", hosts=4),
             pod_node("proj-1", "europe-west4-a", "starting", hosts=4, state="CREATING")]
    with tpu_api("proj-1", "europe-west4-a", nodes) as (address, asked):
        found, named, missing, creating = resolve(
            address, tmp_path,
            ("my-pod", None, None),  # project and zone from the metadata server
            ("my-pod", "europe-west4-a", "proj-1"),  # as train.sh's hparams layer gives them
            ("no-such-tpu", "europe-west4-a", "proj-1"), ("starting", "europe-west4-a", "proj-1"))
    hosts = [f"127.0.0.{i}:8470" for i in range(2, 6)]
    assert found == named == {"master": "grpc://127.0.0.2:8470", "cluster": {"worker": hosts}}
    assert missing["error"].startswith("ValueError: Could not lookup TPU metadata from name 'no-such-tpu'.")
    assert creating["error"] == 'RuntimeError: TPU "starting" is not yet ready; state: "CREATING"'
    # the API was asked with the VM's service-account token, which oauth2client took from the metadata server
    api = [(path.split("?")[0], auth) for _, path, auth in asked if path.startswith("/v1/")]
    assert ("/v1/projects/proj-1/locations/europe-west4-a/nodes/my-pod", f"Bearer {TOKEN}") in api
    assert any(path.endswith("/token") for _, path, _ in asked if "/service-accounts/" in path)


def test_without_the_pod_libraries_the_resolver_says_what_to_install():
    """The failure the `pod` extra prevents (checked against TensorFlow's own client module)."""
    from tensorflow.python.tpu.client import client

    assert client._GOOGLE_API_CLIENT_INSTALLED, "google-api-python-client + oauth2client (the `pod` extra) missing"
    with pytest.raises(RuntimeError, match="Missing runtime dependency on the Google API client"):
        saved, client._GOOGLE_API_CLIENT_INSTALLED = client._GOOGLE_API_CLIENT_INSTALLED, False
        try:
            client.Client(tpu="my-pod", zone="europe-west4-a", project="proj-1")._tpu_service()
        finally:
            client._GOOGLE_API_CLIENT_INSTALLED = saved
