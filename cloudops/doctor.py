"""Preflight for a TPU run (`electra-doctor`): find in a minute what would fail hours in.

Checks, in order: the installed TensorFlow build (exactly one; the TPU build on a TPU VM),
its version against the supported ones and against tensorflow-text, Keras and libtpu;
Cloud Storage credentials; every gs:// path of the run (data dir, model
dir, logs) is readable and writable by this account (on the TPU VM: the VM's service
account); the bucket is in the TPU zone's region; the records exist and their manifest
agrees with the hparams (sequence length, vocab size); the hparams agree with the
accelerator (core count); this host may drive that TPU as a TensorFlow client (`tpu_name`
"local" only on a single host; a multi-host slice only by its name, from worker 0, with
TPU_LOAD_LIBRARY=0: foundation/tpu_host.py); the TPU answers with the expected number
of cores. Each result is one line, `ok` or `FAIL` with the fix. The decisions are pure functions below; `main`
only gathers the facts. Exit status 1 if anything failed.

    electra-doctor --data-dir gs://BUCKET/RUN --hparams configs/base.json --model-name NAME \\
        --zone europe-west4-a --accelerator-type v3-8 --tpu local
    TPU_LOAD_LIBRARY=0 electra-doctor ... --accelerator-type v3-32 --hparams configs/base.json \\
        --hparams '{"tpu_name": "my-pod", "num_tpu_cores": 32}' --tpu my-pod   # worker 0 of a pod slice
    electra-doctor --versions-only --tpu local    # what scripts/setup_tpu.sh runs after installing
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import uuid
from typing import Any, Callable, Mapping, NamedTuple

from cloudops import storage
from data_prep import records
from foundation import console
from foundation.errors import UserError, run_cli
from foundation.tpu_host import TpuHost, host_devices, is_multi_host, read_tpu_host, resolver_name, slice_devices

# Multi-region bucket locations and the prefix of the regions they span.
_MULTI_REGIONS = {"us": "us-", "eu": "europe-", "asia": "asia-"}


# Every distribution that installs the `tensorflow` package; two of them overwrite each other.
TF_BUILDS = ("tensorflow", "tensorflow-cpu", "tensorflow-tpu", "tensorflow-intel", "tf-nightly", "tf-nightly-cpu",
             "tf-nightly-tpu")
SUPPORTED_TF = ("2.20", "2.21")  # minor versions; README "Supported TensorFlow versions"
VERSIONED = (*TF_BUILDS, "tensorflow-text", "keras", "libtpu")


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str  # what was found; on failure also the fix

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def check_tpu_client(tpu: str, num_tpu_cores: int, accelerator_type: str, worker: int | None,
                     load_library: str | None) -> Check:
    """Whether this host may drive `tpu` as the run's one TensorFlow client (tpu_host.resolver_name).

    `worker` is this TPU VM's index in the slice; off a TPU VM (None) it is judged as worker 0,
    where scripts/doctor.sh runs it."""
    host = TpuHost(accelerator_type, 0 if worker is None else worker)
    try:
        name = resolver_name(tpu, num_tpu_cores, host, load_library)
    except UserError as exc:
        return Check("tpu client", False, str(exc))
    if is_multi_host(accelerator_type):
        return Check("tpu client", True, f"TPU {name!r}: this one client drives all {slice_devices(accelerator_type)} "
                                         f"cores of {accelerator_type}")
    return Check("tpu client", True, f"TPU {name!r}" + (" (this TPU VM's own)" if name == "local" else ""))


def check_tpu_devices(found: int | Exception, accelerator_type: str, tpu: str = "local") -> Check:
    """`found` TPU devices through `tpu`: this host's share of the slice for "local", else the whole slice."""
    expected = host_devices(accelerator_type) if tpu == "local" else slice_devices(accelerator_type)
    where = "on this host" if tpu == "local" else f"through TPU {tpu!r}"
    if isinstance(found, Exception):
        first = str(found).strip().splitlines()[0][:160] if str(found).strip() else type(found).__name__
        return Check("tpu", False, f"no TPU reachable ({first}); fix: run this on the TPU VM (scripts/doctor.sh), "
                                   "check `gcloud compute tpus tpu-vm describe` says READY, and stop any other "
                                   "program holding the TPU (only one process may use it)")
    if found != expected:
        return Check("tpu", False, f"{found} TPU cores visible, {accelerator_type} should show {expected} {where}; "
                                   "fix: set ACCELERATOR_TYPE in tpu.env to the TPU's real type, or recreate the TPU VM")
    return Check("tpu", True, f"{found} TPU cores ({accelerator_type})")


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def check_versions(installed: Mapping[str, str], libtpu_requirement: str | None, on_tpu: bool) -> list[Check]:
    """One TensorFlow build (the TPU one on a TPU), a supported version, and the libraries that
    must match it: tensorflow-text of the same minor version, Keras 3, and on the TPU build the
    libtpu its metadata requires. `installed` maps distribution names to versions."""
    from packaging.requirements import Requirement

    builds = [(name, installed[name]) for name in TF_BUILDS if name in installed]
    setup = "scripts/setup_tpu.sh" if on_tpu else "pip install -e .[cpu] (or .[gpu])"
    if not builds:
        return [Check("tensorflow", False, f"no TensorFlow installed; fix: {setup}")]
    if len(builds) > 1:
        names = ", ".join(f"{n} {v}" for n, v in builds)
        return [Check("tensorflow", False, f"{len(builds)} TensorFlow builds installed ({names}): they overwrite "
                                           f"each other's files; fix: pip uninstall -y {' '.join(n for n, _ in builds)}"
                                           f", then {setup}")]
    (build, version), = builds
    if on_tpu and build != "tensorflow-tpu":
        return [Check("tensorflow", False, f"{build} {version} cannot drive a TPU; fix: pip uninstall -y {build}, "
                                           "then scripts/setup_tpu.sh (installs tensorflow-tpu)")]
    if _minor(version) not in SUPPORTED_TF:
        return [Check("tensorflow", False, f"{build} {version} is not a supported version "
                                           f"({', '.join(SUPPORTED_TF)}); fix: {setup}")]
    checks = [Check("tensorflow", True, f"{build} {version}, the only TensorFlow build")]
    text = installed.get("tensorflow-text")
    if text is None or _minor(text) != _minor(version):
        found = f"tensorflow-text {text} is built for TensorFlow {_minor(text)}" if text else "no tensorflow-text"
        checks.append(Check("tensorflow-text", False, f"{found}, TensorFlow is {version}; fix: pip install --no-deps "
                                                      f"'tensorflow-text=={_minor(version)}.*'"))
    else:
        checks.append(Check("tensorflow-text", True, f"{text}, matches TensorFlow {_minor(version)}"))
    keras = installed.get("keras", "")
    checks.append(Check("keras", keras.startswith("3."), f"{keras}" if keras.startswith("3.") else
                        f"{keras or 'none'}, the model needs Keras 3; fix: pip install 'keras>=3.10,<4'"))
    if build == "tensorflow-tpu":
        libtpu, wanted = installed.get("libtpu"), Requirement(libtpu_requirement or "libtpu")
        if libtpu is not None and wanted.specifier.contains(libtpu, prereleases=True):
            checks.append(Check("libtpu", True, f"{libtpu}, as {build} {version} requires ({wanted})"))
        else:
            checks.append(Check("libtpu", False, f"{libtpu or 'not installed'}, {build} {version} requires {wanted}; "
                                                 "fix: scripts/setup_tpu.sh (the `tpu` extra pins the tested libtpu)"))
    return checks


def installed_versions() -> dict[str, str]:
    """Versions of the distributions `check_versions` looks at, as pip installed them."""
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def libtpu_requirement() -> str | None:
    """The libtpu requirement in tensorflow-tpu's metadata (e.g. `libtpu~=0.0.14`), if installed."""
    try:
        requires = importlib.metadata.requires("tensorflow-tpu") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((r.split(";")[0].strip() for r in requires if re.match(r"libtpu\b", r) and "extra ==" not in r), None)


def region_of_zone(zone: str) -> str:
    if not re.fullmatch(r"[a-z]+-[a-z]+\d+-[a-z]", zone):
        raise UserError(f"--zone {zone}: expected a zone like europe-west4-a")
    return zone.rsplit("-", 1)[0]


def check_bucket_region(bucket: str, location: str, data_locations: list[str], zone: str) -> Check:
    """The bucket must hold its data in the TPU's region (a matching multi-region is accepted)."""
    region = region_of_zone(zone)
    loc = location.lower()
    inside = (loc == region or region in [d.lower() for d in data_locations]
              or region.startswith(_MULTI_REGIONS.get(loc, "\0")))
    if inside:
        return Check("bucket region", True, f"gs://{bucket} is in {location}, the TPU in {region}")
    return Check("bucket region", False,
                 f"gs://{bucket} is in {location} but the TPU is in {region}: every step would read across "
                 f"regions (slower, billed as egress); fix: create a bucket in {region} "
                 f"(scripts/create_bucket.sh) and copy the run there with `gcloud storage cp -r`")


def check_manifest(manifest: records.Manifest | None, hparams: Any, where: str) -> list[Check]:
    """The records must have the hparams' sequence length and vocabulary size."""
    if manifest is None:
        return [Check("data manifest", True, f"no {records.MANIFEST} in {where} (data from the original tool?): "
                                             "max_seq_length and vocab_size not checked")]
    checks = []
    for key, built in (("max_seq_length", manifest.max_seq_length), ("vocab_size", manifest.vocab_size)):
        wanted = getattr(hparams, key)
        if built == wanted:
            checks.append(Check(f"data {key}", True, f"{built} in the records and the hparams"))
        else:
            checks.append(Check(f"data {key}", False,
                                f"records in {where} were built with {key}={built}, the hparams say {wanted}; "
                                f'fix: set "{key}": {built} in the hparams, or rebuild the data with {wanted}'))
    return checks


def check_hparams_for_tpu(hparams: Any, accelerator_type: str) -> list[Check]:
    """A TPU run needs use_tpu and the slice's core count (TensorFlow's TPU devices) in the hparams."""
    cores = slice_devices(accelerator_type)
    checks = [Check("hparams use_tpu", bool(hparams.use_tpu),
                    "true" if hparams.use_tpu else 'false; fix: set "use_tpu": true in the hparams')]
    if hparams.num_tpu_cores == cores:
        checks.append(Check("hparams num_tpu_cores", True, f"{cores} ({accelerator_type})"))
    else:
        checks.append(Check("hparams num_tpu_cores", False,
                            f"{hparams.num_tpu_cores}, but {accelerator_type} has {cores} cores; "
                            f'fix: set "num_tpu_cores": {cores} in the hparams'))
    return checks


def check_read_write(store: storage.Storage, uri: storage.GcsUri) -> Check:
    """List, write, read back and delete a small probe object under `uri`."""
    from google.api_core import exceptions as api

    probe = uri.child(f".electra-doctor-{uuid.uuid4().hex[:12]}")
    try:
        storage.list_objects(store, uri)
        blob = store.client.bucket(probe.bucket).blob(probe.name)
        blob.upload_from_string(b"probe")
        ok = blob.download_as_bytes() == b"probe"
        blob.delete()
    except UserError as exc:
        return Check(f"access {uri}", False, str(exc))
    except api.GoogleAPICallError as exc:  # refused on the probe object itself
        return Check(f"access {uri}", False, str(storage.api_error(exc, uri)))
    return Check(f"access {uri}", ok, "readable and writable" if ok else "probe object read back wrong")


def count_tpu_devices(tpu: str) -> int | Exception:
    """TPU devices TensorFlow reaches on `tpu` ('local' on a TPU VM), or the error."""
    try:
        import tensorflow as tf

        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return len(tf.config.list_logical_devices("TPU"))
    except Exception as exc:  # any failure to reach the TPU is the finding, not a crash
        return exc


def _bucket_checks(store: storage.Storage, data_dir: storage.GcsUri, zone: str | None) -> list[Check]:
    if zone is None:
        return []
    try:
        bucket = store.client.get_bucket(data_dir.bucket)
    except Exception as exc:
        return [Check("bucket region", False, f"cannot read the metadata of gs://{data_dir.bucket} ({exc}); "
                                              "fix: grant roles/storage.legacyBucketReader on it, or check the region "
                                              "yourself: gcloud storage buckets describe gs://BUCKET")]
    return [check_bucket_region(bucket.name, bucket.location or "?", list(bucket.data_locations or []), zone)]


def _records_checks(store: storage.Storage, data_dir: storage.GcsUri, given: dict[str, Any]) -> list[Check]:
    """The records, and their manifest against the hparams as the trainer resolves them (`fill_from_data`:
    vocab_size and max_seq_length from the data where no layer set them)."""
    from pretrain.config import fill_from_data, from_hparams

    records_dir = data_dir.child("pretrain_tfrecords")
    try:
        objects = storage.list_objects(store, records_dir)
    except UserError as exc:
        return [Check("records", False, str(exc))]
    names = {o.name.rsplit("/", 1)[-1]: o for o in objects}
    shards = [n for n in names if n.startswith(records.SHARD_PREFIX + "-")]
    if not shards:
        return [Check("records", False, f"no {records.SHARD_PREFIX}-I-of-N files in {records_dir}; "
                                        "fix: scripts/build_data.sh, or scripts/upload.sh --records DIR")]
    found = [Check("records", True, f"{len(shards)} shards in {records_dir}")]
    manifest = None
    if records.MANIFEST in names:
        text = store.client.bucket(records_dir.bucket).blob(names[records.MANIFEST].name).download_as_text()
        manifest = records.Manifest.from_json(text, str(records_dir.child(records.MANIFEST)))
    hparams = from_hparams(fill_from_data(given, manifest and manifest.vocab_size, manifest and manifest.max_seq_length))
    return found + check_manifest(manifest, hparams, str(records_dir))


def run_checks(data_dir: str, hparams_sources: list[str], model_name: str, zone: str | None,
               accelerator_type: str, tpu: str, emit: Callable[[Check], None]) -> list[Check]:
    """Run every check, handing each result to `emit` as soon as it is known.

    `hparams_sources` are layered as run_pretraining.py layers its --hparams (later wins)."""
    from pretrain.config import from_hparams, layer_hparams

    results: list[Check] = []

    def add(checks: list[Check]) -> None:
        for c in checks:
            results.append(c)
            emit(c)

    add(check_versions(installed_versions(), libtpu_requirement(), on_tpu=tpu != "none"))
    root = storage.parse_uri(data_dir)
    try:
        given = layer_hparams(hparams_sources)
        hparams = from_hparams(given)
        sizes = ", ".join(f"{k}={given[k] if k in given else 'from the data'}" for k in ("max_seq_length", "vocab_size"))
        add([Check("hparams", True, f"{' + '.join(hparams_sources)}: model_size={hparams.model_size}, {sizes}")])
    except UserError as exc:
        hparams = None
        add([Check("hparams", False, str(exc))])
    try:
        store = storage.connect()
        add([Check("credentials", True, "Cloud Storage client ready")])
    except UserError as exc:
        store = None
        add([Check("credentials", False, str(exc))])
    if store is not None:
        add([check_read_write(store, uri) for uri in (root, root.child(f"models/{model_name}"), root.child("logs"))])
        add(_bucket_checks(store, root, zone))
        if hparams is not None:
            add(_records_checks(store, root, given))
    if tpu != "none":
        client = None
        if hparams is not None:
            host = read_tpu_host()
            client = check_tpu_client(tpu, hparams.num_tpu_cores, accelerator_type, host.worker if host else None,
                                      os.environ.get("TPU_LOAD_LIBRARY"))
            add([*check_hparams_for_tpu(hparams, accelerator_type), client])
        if client is None or client.ok:  # never start a TPU client where one cannot work
            add([check_tpu_devices(count_tpu_devices(tpu), accelerator_type, tpu)])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = console.parser(prog="electra-doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="gs://BUCKET/RUN (records in pretrain_tfrecords/)")
    parser.add_argument("--hparams", action="append",
                        help="hparams JSON file or string, as for run_pretraining.py; repeat to layer them")
    parser.add_argument("--model-name", help="the model dir is DATA_DIR/models/NAME")
    parser.add_argument("--versions-only", action="store_true",
                        help="check only the installed TensorFlow build and its libraries (with --tpu: the TPU build)")
    parser.add_argument("--zone", help="the TPU's zone; the bucket must be in its region")
    parser.add_argument("--accelerator-type", default="v3-8", help="the TPU's type: v3-8, or a pod slice such as v3-32")
    parser.add_argument("--tpu", default="none",
                        help="'local' on a single-host TPU VM, the TPU's name on worker 0 of a multi-host slice "
                             "(with TPU_LOAD_LIBRARY=0), or 'none' to skip")
    args = parser.parse_args(argv)
    if args.versions_only:
        results = check_versions(installed_versions(), libtpu_requirement(), on_tpu=args.tpu != "none")
        for c in results:
            print(c.line())
        failed = sum(not c.ok for c in results)
        print(f"{len(results)} checks, {failed} failed")
        return 1 if failed else 0
    missing = [f"--{k.replace('_', '-')}" for k in ("data_dir", "hparams", "model_name") if getattr(args, k) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    slice_devices(args.accelerator_type)  # a malformed type is one error line
    if args.zone:
        region_of_zone(args.zone)
    results = run_checks(args.data_dir, args.hparams, args.model_name, args.zone, args.accelerator_type, args.tpu,
                         emit=lambda c: print(c.line(), flush=True))
    failed = sum(not c.ok for c in results)
    print(f"{len(results)} checks, {failed} failed" + ("" if failed else ": ready to train"))
    return 1 if failed else 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
