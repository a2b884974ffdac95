"""Which TPU a training client on this host may drive, decided before TensorFlow touches the TPU.

A TPU VM slice larger than one host (v3-32: 4 hosts of 8 cores) is driven the way Google's
Cloud TPU documentation drives TensorFlow on it: a `tpu-vm-tf-X.Y.Z-pod` image runs a TPU
runtime on every host, and ONE client, on worker 0, started with `TPU_LOAD_LIBRARY=0` (so it
leaves its own chips to that runtime), reaches all hosts through
`TPUClusterResolver(tpu=<the TPU's name>)`. `tpu_name: "local"` reaches only the cores of
the host it runs on. Facts about the host come from the TPU VM's metadata server (the
`accelerator-type` and `agent-worker-number` attributes, the ones JAX's Cloud TPU cluster
detection reads); off a TPU VM there are none and only what needs no host is checked.
"""
from __future__ import annotations

import http.client
import os
import re
import urllib.request
from typing import NamedTuple

from foundation.errors import UserError

_ACCELERATOR_RE = re.compile(r"v(\d+)([a-z]*)-(\d+)")
# No TPU VM host shows TensorFlow more than 8 TPU devices (v2/v3: 8 cores; v4/v5p: 4 chips; v5e/v6e: 8 chips).
MAX_HOST_DEVICES = 8
# The GCE metadata server; GCE_METADATA_IP overrides it, as it does for TensorFlow's and JAX's own look-ups.
_METADATA_IP = "169.254.169.254"


def parse_accelerator(accelerator_type: str) -> tuple[int, str, int]:
    """`v3-8` -> (3, "", 8); `v5litepod-16` -> (5, "litepod", 16); `v5p-8` -> (5, "p", 8)."""
    match = _ACCELERATOR_RE.fullmatch(accelerator_type)
    if not match:
        raise UserError(f"--accelerator-type {accelerator_type}: expected a type like v3-8 or v3-32")
    return int(match.group(1)), match.group(2), int(match.group(3))


def host_devices(accelerator_type: str) -> int:
    """TPU devices TensorFlow sees on ONE host of the slice.

    v2/v3: one device per core, 8 per host. v4/v5p: the name counts cores but two cores
    form one megacore device, 4 per host. v5e/v6e: the name counts chips, one device each,
    8 on a single-host slice, 4 per host on larger ones. Only the v2/v3 figures are
    documented facts here; the others are this project's unverified reading, so no refusal
    depends on them (see `resolver_name`).
    """
    generation, variant, count = parse_accelerator(accelerator_type)
    if generation <= 3:
        return min(count, 8)
    if generation == 4 or variant == "p":
        return min(count // 2, 4)
    return count if count <= 8 else 4


def slice_devices(accelerator_type: str) -> int:
    """TPU devices (replicas) TensorFlow sees across the whole slice: v3-32 -> 32, v4-32 -> 16."""
    generation, variant, count = parse_accelerator(accelerator_type)
    return count // 2 if generation == 4 or variant == "p" else count


def is_multi_host(accelerator_type: str) -> bool:
    """More than one host: the number in the name is above 8 in every generation (8 cores of
    v2/v3/v4/v5p or 8 chips of v5e/v6e is the largest single host)."""
    return parse_accelerator(accelerator_type)[2] > MAX_HOST_DEVICES


class TpuHost(NamedTuple):
    accelerator_type: str  # the slice this host belongs to, e.g. "v3-32"
    worker: int  # this host's index in the slice; 0 runs the client


def _metadata(key: str, timeout: float) -> str | None:
    host = os.environ.get("GCE_METADATA_IP", _METADATA_IP)
    request = urllib.request.Request(f"http://{host}/computeMetadata/v1/instance/attributes/{key}",
                                     headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.headers.get("Metadata-Flavor") != "Google":
                return None
            return response.read().decode().strip()
    except (OSError, http.client.HTTPException, ValueError):  # URLError and timeouts are OSErrors
        return None


def read_tpu_host(timeout: float = 1.0) -> TpuHost | None:
    """This TPU VM's slice type and worker index, or None when this is not a TPU VM."""
    accelerator_type, worker = _metadata("accelerator-type", timeout), None
    if accelerator_type and _ACCELERATOR_RE.fullmatch(accelerator_type):
        worker = _metadata("agent-worker-number", timeout)
    if worker is None or not worker.isdigit():
        return None
    return TpuHost(accelerator_type, int(worker))


def _target(tpu_name: str | None) -> str:
    """The TPU an hparam `tpu_name` names: "local" (unset, empty or "local") is this TPU VM's own."""
    return "local" if tpu_name in (None, "", "local") else tpu_name


def resolver_name(tpu_name: str | None, num_tpu_cores: int, host: TpuHost | None,
                  load_library: str | None) -> str:
    """The name to give TPUClusterResolver, or a UserError for a combination that cannot work.

    `host` is this TPU VM (None off a TPU VM); `load_library` is $TPU_LOAD_LIBRARY.
    """
    name = _target(tpu_name)
    how = ("TensorFlow drives a multi-host slice from one client on worker 0, with tpu_name set to the "
           "TPU's name and TPU_LOAD_LIBRARY=0 (scripts/train.sh does this)")
    if host is not None and is_multi_host(host.accelerator_type):
        slice_type, cores = host.accelerator_type, slice_devices(host.accelerator_type)
        if host.worker != 0:
            raise UserError(f"this is worker {host.worker} of the multi-host slice {slice_type}, and {how}; "
                            "run training on worker 0 only (gcloud ... ssh --worker=0, not --worker=all)")
        if name == "local":
            raise UserError(f"tpu_name 'local' on the multi-host slice {slice_type} reaches only this host's "
                            f"{host_devices(slice_type)} of its {cores} cores; {how}: set \"tpu_name\" to the "
                            f"TPU's name and \"num_tpu_cores\": {cores}")
        if load_library != "0":
            found = "unset" if load_library is None else f"{load_library!r}"
            raise UserError(f"TPU_LOAD_LIBRARY is {found} on worker 0 of the multi-host slice {slice_type}: "
                            "this client would take the chips the TPU runtime serves to the slice; run with "
                            "TPU_LOAD_LIBRARY=0 (scripts/train.sh sets it)")
        return name
    documented = host is not None and parse_accelerator(host.accelerator_type)[0] <= 3
    local = host_devices(host.accelerator_type) if documented else MAX_HOST_DEVICES
    if name == "local" and num_tpu_cores > local:
        where = f"this {host.accelerator_type} host's {local}" if documented else f"one host's (at most {local})"
        raise UserError(f"num_tpu_cores={num_tpu_cores} but tpu_name 'local' reaches only {where} TPU cores; {how}: "
                        f"set \"tpu_name\" to the TPU's name, or \"num_tpu_cores\" to {local}")
    return name


def check_tpu_paths(use_tpu: bool, tpu_name: str | None, paths: dict[str, str]) -> None:
    """A TPU reached by name (a multi-host slice, a TPU node) runs the input pipelines and the
    checkpoint writes in its hosts' TPU runtimes, which cannot see this VM's disk: every path
    they open must be gs://. `paths` maps the flag that set it to the path."""
    if not use_tpu or _target(tpu_name) == "local":
        return
    for flag, path in paths.items():
        if not path.startswith("gs://"):
            raise UserError(f"{flag} {path}: TPU {tpu_name!r} is reached by name, so its hosts read the records and "
                            "write the checkpoints themselves and cannot see this VM's disk; put it in a bucket "
                            "(gs://BUCKET/...: scripts/upload.sh)")
