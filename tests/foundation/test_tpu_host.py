"""Which TPU a client may drive from this host: the slice arithmetic, the refusals, and the host facts
read from a TPU VM's metadata server (a real HTTP server standing in for it, tests/tpu_metadata.py)."""
import time

import pytest

from foundation.errors import UserError
from foundation import tpu_host
from foundation.tpu_host import TpuHost, resolver_name
from tpu_metadata import metadata_server, nothing_listening, tpu_vm

HOW = ("TensorFlow drives a multi-host slice from one client on worker 0, with tpu_name set to the TPU's name and "
       "TPU_LOAD_LIBRARY=0 (scripts/train.sh does this)")


@pytest.mark.parametrize("accelerator,in_name,per_host,whole_slice,multi_host", [
    ("v2-8", 8, 8, 8, False), ("v3-8", 8, 8, 8, False), ("v3-32", 32, 8, 32, True), ("v2-512", 512, 8, 512, True),
    ("v4-8", 8, 4, 4, False), ("v4-32", 32, 4, 16, True), ("v5p-8", 8, 4, 4, False),
    ("v5litepod-8", 8, 8, 8, False), ("v5litepod-16", 16, 4, 16, True), ("v6e-8", 8, 8, 8, False),
])
def test_devices_per_host_and_per_slice(accelerator, in_name, per_host, whole_slice, multi_host):
    assert tpu_host.parse_accelerator(accelerator)[2] == in_name
    assert tpu_host.host_devices(accelerator) == per_host
    assert tpu_host.slice_devices(accelerator) == whole_slice
    assert tpu_host.is_multi_host(accelerator) is multi_host


def test_a_malformed_accelerator_type_is_a_user_error():
    with pytest.raises(UserError, match="--accelerator-type v3: expected a type like v3-8"):
        tpu_host.parse_accelerator("v3")


@pytest.mark.parametrize("tpu_name,cores,host,load,expected", [
    (None, 8, None, None, "local"),  # not a TPU VM (a test, a CPU box): only the core count is judged
    ("", 8, TpuHost("v3-8", 0), None, "local"),
    ("local", 8, TpuHost("v3-8", 0), None, "local"),  # the v3-8 presets, exactly as before
    ("my-tpu", 8, TpuHost("v3-8", 0), None, "my-tpu"),
    ("my-pod", 32, TpuHost("v3-32", 0), "0", "my-pod"),  # what scripts/train.sh starts on a pod slice
    ("my-pod", 32, None, None, "my-pod"),  # a client VM outside the slice
    ("local", 8, TpuHost("v4-8", 0), None, "local"),  # v4's 4 devices per host are not a documented fact:
    # TensorFlow's own count (after initialize_tpu_system) decides there
])
def test_resolver_name_accepts(tpu_name, cores, host, load, expected):
    assert resolver_name(tpu_name, cores, host, load) == expected


LOCAL_ON_POD = (f"tpu_name 'local' on the multi-host slice v3-32 reaches only this host's 8 of its 32 cores; {HOW}: "
                "set \"tpu_name\" to the TPU's name and \"num_tpu_cores\": 32")
NOT_WORKER_0 = (f"this is worker {{}} of the multi-host slice v3-32, and {HOW}; run training on worker 0 only "
                "(gcloud ... ssh --worker=0, not --worker=all)")
LOAD_LIBRARY = ("TPU_LOAD_LIBRARY is {} on worker 0 of the multi-host slice v3-32: this client would take the chips the "
                "TPU runtime serves to the slice; run with TPU_LOAD_LIBRARY=0 (scripts/train.sh sets it)")


@pytest.mark.parametrize("tpu_name,cores,host,load,message", [
    ("local", 32, None, None,
     f"num_tpu_cores=32 but tpu_name 'local' reaches only one host's (at most 8) TPU cores; {HOW}: "
     "set \"tpu_name\" to the TPU's name, or \"num_tpu_cores\" to 8"),
    (None, 32, TpuHost("v3-8", 0), None,
     f"num_tpu_cores=32 but tpu_name 'local' reaches only this v3-8 host's 8 TPU cores; {HOW}: "
     "set \"tpu_name\" to the TPU's name, or \"num_tpu_cores\" to 8"),
    # the presets' "local" on a pod slice: every host would see 8 of 32 cores and act as chief
    ("local", 32, TpuHost("v3-32", 0), "0", LOCAL_ON_POD),
    ("local", 8, TpuHost("v3-32", 0), None, LOCAL_ON_POD),
    # --worker=all: the same command on hosts 1..3, whatever it names
    ("my-pod", 32, TpuHost("v3-32", 3), "0", NOT_WORKER_0.format(3)),
    ("local", 8, TpuHost("v3-32", 1), None, NOT_WORKER_0.format(1)),
    ("my-pod", 32, TpuHost("v3-32", 0), None, LOAD_LIBRARY.format("unset")),
    ("my-pod", 32, TpuHost("v3-32", 0), "1", LOAD_LIBRARY.format("'1'")),
])
def test_resolver_name_refuses_what_cannot_work(tpu_name, cores, host, load, message):
    with pytest.raises(UserError) as info:
        resolver_name(tpu_name, cores, host, load)
    assert str(info.value) == message


def test_the_host_facts_come_from_the_metadata_server(monkeypatch):
    with metadata_server(tpu_vm("v3-32", 2)) as address:
        monkeypatch.setenv("GCE_METADATA_IP", address)
        assert tpu_host.read_tpu_host() == TpuHost("v3-32", 2)
    with metadata_server(tpu_vm("v3-8", 0)) as address:
        monkeypatch.setenv("GCE_METADATA_IP", address)
        assert tpu_host.read_tpu_host() == TpuHost("v3-8", 0)


@pytest.mark.parametrize("attributes,flavor", [
    ({"agent-worker-number": "0"}, "Google"),  # a GCE VM that is not a TPU VM
    ({"accelerator-type": "v3-32", "agent-worker-number": "zero"}, "Google"),
    ({"accelerator-type": "nvidia-a100", "agent-worker-number": "0"}, "Google"),
    (tpu_vm("v3-32", 1), "Amazon"),  # something else at that address: not Google's metadata
])
def test_not_a_tpu_vm(attributes, flavor, monkeypatch):
    with metadata_server(attributes, flavor) as address:
        monkeypatch.setenv("GCE_METADATA_IP", address)
        assert tpu_host.read_tpu_host() is None


def test_no_metadata_server_answers_at_once(monkeypatch):
    monkeypatch.setenv("GCE_METADATA_IP", nothing_listening())
    start = time.monotonic()
    assert tpu_host.read_tpu_host() is None
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("use_tpu, tpu_name, paths, refused", [
    (True, "local", {"--data-dir": "runs/x"}, None),  # a v3-8's own TPU reads this VM's disk
    (True, None, {"--data-dir": "runs/x"}, None),
    (False, "my-pod", {"--data-dir": "runs/x"}, None),  # not on a TPU at all
    (True, "my-pod", {"--data-dir": "gs://b/run", "--eval-data-dir": "gs://b/heldout"}, None),
    (True, "my-pod", {"--data-dir": "gs://b/run", "--eval-data-dir": "heldout"}, "--eval-data-dir heldout"),
    (True, "my-pod", {"--data-dir": "runs/x"}, "--data-dir runs/x"),
])
def test_a_tpu_reached_by_name_needs_bucket_paths(use_tpu, tpu_name, paths, refused):
    if refused is None:
        tpu_host.check_tpu_paths(use_tpu, tpu_name, paths)
        return
    with pytest.raises(UserError) as err:
        tpu_host.check_tpu_paths(use_tpu, tpu_name, paths)
    assert str(err.value).startswith(f"{refused}: TPU 'my-pod' is reached by name")
