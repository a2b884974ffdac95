"""Preflight for a TPU run (`electra-doctor`): find in a minute what would fail hours in.

Checks, in order: the install path (the TPU image's TensorFlow, or pip's in this venv), the
installed TensorFlow build (exactly one; on a TPU VM the image's or tensorflow-tpu), its version
against the supported ones and against tensorflow-text, Keras (refused versions) and libtpu;
Cloud Storage credentials; every gs:// path of the run (data dir, model
dir, logs) is readable and writable by this account (on the TPU VM: the VM's service
account); the bucket is in the TPU zone's region; the records exist and their manifest
agrees with the hparams (sequence length, vocab size); the hparams agree with the
accelerator (core count); this host may drive that TPU as a TensorFlow client (`tpu_name`
"local" only on a single host; a multi-host slice only by its name, from worker 0, with
TPU_LOAD_LIBRARY=0: foundation/tpu_host.py); the TPU answers with the expected number
of cores and runs a bfloat16 matmul and an all-reduce across all of them (`smoke_test`,
docs/tpu_software.md). Each result is one line, `ok` or `FAIL` with the fix. The decisions are pure functions below; `main`
only gathers the facts. Exit status 1 if anything failed.

    electra-doctor --data-dir gs://BUCKET/RUN --hparams configs/base.json --model-name NAME \\
        --zone europe-west4-a --accelerator-type v3-8 --tpu local
    TPU_LOAD_LIBRARY=0 electra-doctor ... --accelerator-type v3-32 --hparams configs/base.json \\
        --hparams '{"tpu_name": "my-pod", "num_tpu_cores": 32}' --tpu my-pod   # worker 0 of a pod slice
    electra-doctor --versions-only --tpu local    # what scripts/setup_tpu.sh runs after installing
    electra-doctor --smoke --tpu local            # versions + the TPU's matmul and all-reduce, in seconds
    electra-doctor --smoke                        # the same on 2 logical CPUs (MirroredStrategy)
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import sys
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
# Minor versions, each tested on the CPU (`make test-tf TF=X.Y`); docs/tpu_software.md has the table.
SUPPORTED_TF = ("2.18", "2.19", "2.20", "2.21")
VERSIONED = (*TF_BUILDS, "tensorflow-text", "keras", "libtpu")
KERAS_FLOOR = (3, 6)  # the Keras of TensorFlow 2.18's release and its TPU images; the oldest tested
# Keras minors known to break the run, and why; the fix names a tested one.
KERAS_REFUSED = {
    (3, 7): "makes Keras variables MEAN-aggregated by default, and TensorFlow refuses a distributed non-float "
            "variable with MEAN aggregation ('creating distributed tf.Variable with aggregation=MEAN and a "
            "non-floating dtype is not supported'): keras issue 20700, on a TPU; fixed in 3.8",
}


class Dist(NamedTuple):
    """One installed distribution; `image` when it lies outside this venv, in the system Python where
    Google's TPU images install their TensorFlow and libtpu (the venv sees them: --system-site-packages)."""
    name: str
    version: str
    image: bool = False

    def label(self) -> str:
        return f"{self.name} {self.version}" + (" (the image's)" if self.image else "")


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
        return Check("tpu", False, f"no TPU reachable ({_first_line(found)}); fix: run this on the TPU VM (scripts/doctor.sh), "
                                   "check `gcloud compute tpus tpu-vm describe` says READY, and stop any other "
                                   "program holding the TPU (only one process may use it)")
    if found != expected:
        return Check("tpu", False, f"{found} TPU cores visible, {accelerator_type} should show {expected} {where}; "
                                   "fix: set ACCELERATOR_TYPE in tpu.env to the TPU's real type, or recreate the TPU VM")
    return Check("tpu", True, f"{found} TPU cores ({accelerator_type})")


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _keras_check(keras: str | None) -> Check:
    parts = tuple(int(p) for p in re.findall(r"\d+", keras or "")[:2])
    fix = "fix: pip install 'keras==3.6.0' (tested with TensorFlow 2.18) or 'keras>=3.8,<4'"
    if keras is None or parts[:1] != (3,):
        return Check("keras", False, f"{keras or 'none'}, the model needs Keras 3; {fix}")
    if parts < KERAS_FLOOR:
        return Check("keras", False, f"{keras} is older than the oldest tested Keras "
                                     f"{'.'.join(map(str, KERAS_FLOOR))}; {fix}")
    if parts in KERAS_REFUSED:
        return Check("keras", False, f"{keras} {KERAS_REFUSED[parts]}; {fix}")
    return Check("keras", True, keras)


def check_versions(installed: list[Dist], libtpu_requirement: str | None, on_tpu: bool) -> list[Check]:
    """Which install path is in use (the TPU image's TensorFlow, or pip's in this venv), one TensorFlow
    build (on a TPU the TPU build: tensorflow-tpu, or whatever build the TPU image installed), a
    supported version, and the libraries that must match it: tensorflow-text of the same minor
    version, a Keras 3 not known to break, and with tensorflow-tpu the libtpu its metadata requires."""
    from packaging.requirements import Requirement

    builds = sorted(d for d in installed if d.name in TF_BUILDS)
    setup = "scripts/setup_tpu.sh" if on_tpu else "pip install -e .[cpu] (or .[gpu])"
    if not builds:
        return [Check("tensorflow", False, f"no TensorFlow installed; fix: {setup}")]
    if len(builds) > 1:
        names = ", ".join(d.label() for d in builds)
        ours = sorted({d.name for d in builds if not d.image}) or sorted({d.name for d in builds})
        return [Check("tensorflow", False, f"{len(builds)} TensorFlow builds installed ({names}): they overwrite or "
                                           f"shadow each other; fix: pip uninstall -y {' '.join(ours)}, "
                                           f"then {setup}")]
    (tf,) = builds
    path = Check("install path", True, "image: TensorFlow and libtpu as the TPU image installed them" if tf.image else
                 "pip: TensorFlow installed in this venv")
    if on_tpu and tf.name != "tensorflow-tpu" and not tf.image:
        return [path, Check("tensorflow", False, f"{tf.label()} cannot drive a TPU; fix: pip uninstall -y {tf.name}, "
                                                 "then scripts/setup_tpu.sh (the image's TensorFlow or tensorflow-tpu)")]
    if _minor(tf.version) not in SUPPORTED_TF:
        return [path, Check("tensorflow", False, f"{tf.label()} is not a supported version "
                                                 f"({', '.join(SUPPORTED_TF)}); fix: {setup}")]
    checks = [path, Check("tensorflow", True, f"{tf.label()}, the only TensorFlow build")]
    found = {d.name: d.version for d in installed}
    text = found.get("tensorflow-text")
    if text is None or _minor(text) != _minor(tf.version):
        have = f"tensorflow-text {text} is built for TensorFlow {_minor(text)}" if text else "no tensorflow-text"
        checks.append(Check("tensorflow-text", False, f"{have}, TensorFlow is {tf.version}; fix: pip install "
                                                      f"--no-deps 'tensorflow-text=={_minor(tf.version)}.*'"))
    else:
        checks.append(Check("tensorflow-text", True, f"{text}, matches TensorFlow {_minor(tf.version)}"))
    checks.append(_keras_check(found.get("keras")))
    libtpu = found.get("libtpu")
    if tf.name == "tensorflow-tpu":
        wanted = Requirement(libtpu_requirement or "libtpu")
        if libtpu is not None and wanted.specifier.contains(libtpu, prereleases=True):
            checks.append(Check("libtpu", True, f"{libtpu}, as {tf.name} {tf.version} requires ({wanted})"))
        elif libtpu is None and tf.image:
            checks.append(Check("libtpu", True, "the image's own (no pip package: its version shows only when the "
                                                "TPU starts)"))
        else:
            checks.append(Check("libtpu", False, f"{libtpu or 'not installed'}, {tf.name} {tf.version} requires "
                                                 f"{wanted}; fix: scripts/setup_tpu.sh (the `tpu` extra pins the "
                                                 "tested libtpu)"))
    elif on_tpu:  # the image's TensorFlow under another name: libtpu is the image's
        checks.append(Check("libtpu", True, f"{libtpu} (the image's)" if libtpu else
                            "the image's own (no pip package: its version shows only when the TPU starts)"))
    return checks


def installed_dists() -> list[Dist]:
    """The distributions `check_versions` looks at, each copy Python can see (a venv made with
    --system-site-packages also sees the system's), and whether it lies outside this venv."""
    in_venv = sys.prefix != sys.base_prefix
    venv = os.path.realpath(sys.prefix) + os.sep
    found = set()
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "")).lower()
        if name in VERSIONED:
            where = os.path.realpath(str(dist.locate_file("")))
            found.add(Dist(name, dist.version, in_venv and not (where + os.sep).startswith(venv)))
    return sorted(found)


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


def tpu_strategy(tpu: str):
    """TPUStrategy on `tpu` ('local' on a TPU VM, else the TPU's name), or the error: the TPU system
    is initialised here, so this fails in seconds where training would."""
    try:
        from foundation.quiet_tf import tf

        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as exc:  # any failure to reach the TPU is the finding, not a crash
        return exc


def cpu_stand_in(replicas: int = 2):
    """What the smoke test runs on off a TPU: MirroredStrategy over `replicas` logical CPUs, the
    stand-in the tests use for TPUStrategy (same replica context, same all-reduce API)."""
    from pretrain.training.distribute import set_logical_cpu_devices

    from foundation.quiet_tf import tf

    set_logical_cpu_devices(replicas)
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def smoke_test(strategy) -> list[Check]:
    """One bfloat16 matmul on every replica and one all-reduce across all of them, checked by value.

    The two things every training step does (the TPU computes in bfloat16; gradients are summed
    across cores), compiled and run once: a TPU that starts but cannot do these fails here in
    seconds. All ones [128, 128] @ [128, 128] is 128 everywhere, exact in bfloat16; replica i
    contributes i + 1 to the sum, so a replica missing from it shows."""
    import time

    from foundation.quiet_tf import tf

    n = strategy.num_replicas_in_sync

    @tf.function
    def step():
        def replica():
            context = tf.distribute.get_replica_context()
            ones = tf.ones([128, 128], tf.bfloat16)
            product = tf.matmul(ones, ones)  # [128, 128] bfloat16
            mine = tf.cast(context.replica_id_in_sync_group + 1, tf.float32)
            return product, context.all_reduce(tf.distribute.ReduceOp.SUM, mine)

        return strategy.run(replica)

    start = time.monotonic()
    try:
        products, sums = (strategy.experimental_local_results(t) for t in step())
        products = [p.numpy().astype("float32") for p in products]
        sums = [float(t) for t in sums]
    except Exception as exc:  # the finding, not a crash
        return [Check("smoke test", False, f"a bfloat16 matmul and an all-reduce on {n} replicas failed "
                                           f"({_first_line(exc)}); fix: see docs/tpu_software.md")]
    seconds = time.monotonic() - start
    values = sorted({float(v) for p in products for v in (p.min(), p.max())})
    expected = n * (n + 1) / 2
    return [
        Check("bfloat16 matmul", len(products) == n and values == [128.0],
              f"[128, 128] @ [128, 128] on {len(products)} of {n} replicas: {values} (expected [128.0]), "
              f"compiled and run in {seconds:.1f} s"),
        Check("all-reduce", sums == [expected] * n,
              f"sum of 1..{n} over the {n} replicas: {sorted(set(sums))} on each (expected [{expected}])"),
    ]


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

    add(check_versions(installed_dists(), libtpu_requirement(), on_tpu=tpu != "none"))
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
            add(tpu_checks(tpu, accelerator_type))
    return results


def tpu_checks(tpu: str, accelerator_type: str) -> list[Check]:
    """The TPU answers with the slice's cores, then runs the smoke test."""
    strategy = tpu_strategy(tpu)
    found = strategy if isinstance(strategy, Exception) else strategy.num_replicas_in_sync
    devices = check_tpu_devices(found, accelerator_type, tpu)
    return [devices, *smoke_test(strategy)] if devices.ok else [devices]


def smoke_checks(tpu: str, accelerator_type: str, emit: Callable[[Check], None]) -> list[Check]:
    """`--smoke`: versions, then (on a TPU: may this host drive it, its cores) the matmul and the
    all-reduce, on TPUStrategy or, with `tpu` "none", on the CPU stand-in."""
    checks = check_versions(installed_dists(), libtpu_requirement(), on_tpu=tpu != "none")
    for c in checks:
        emit(c)
    if not all(c.ok for c in checks):
        return checks  # a wrong TensorFlow or Keras would only fail later, less clearly
    if tpu == "none":
        more = smoke_test(cpu_stand_in())
    else:
        host = read_tpu_host()
        client = check_tpu_client(tpu, slice_devices(accelerator_type), accelerator_type,
                                  host.worker if host else None, os.environ.get("TPU_LOAD_LIBRARY"))
        emit(client)
        checks.append(client)
        more = tpu_checks(tpu, accelerator_type) if client.ok else []
    for c in more:
        emit(c)
    return checks + more


def main(argv: list[str] | None = None) -> int:
    parser = console.parser(prog="electra-doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="gs://BUCKET/RUN (records in pretrain_tfrecords/)")
    parser.add_argument("--hparams", action="append",
                        help="hparams JSON file or string, as for run_pretraining.py; repeat to layer them")
    parser.add_argument("--model-name", help="the model dir is DATA_DIR/models/NAME")
    parser.add_argument("--versions-only", action="store_true",
                        help="check only the installed TensorFlow build and its libraries (with --tpu: the TPU build)")
    parser.add_argument("--smoke", action="store_true",
                        help="versions, then a bfloat16 matmul and an all-reduce across all cores (with --tpu none: "
                             "across 2 logical CPUs under MirroredStrategy); no gs:// checks")
    parser.add_argument("--zone", help="the TPU's zone; the bucket must be in its region")
    parser.add_argument("--accelerator-type", default="v3-8", help="the TPU's type: v3-8, or a pod slice such as v3-32")
    parser.add_argument("--tpu", default="none",
                        help="'local' on a single-host TPU VM, the TPU's name on worker 0 of a multi-host slice "
                             "(with TPU_LOAD_LIBRARY=0), or 'none' to skip")
    args = parser.parse_args(argv)
    if args.versions_only:
        results = check_versions(installed_dists(), libtpu_requirement(), on_tpu=args.tpu != "none")
        for c in results:
            print(c.line())
        failed = sum(not c.ok for c in results)
        print(f"{len(results)} checks, {failed} failed")
        return 1 if failed else 0
    if args.smoke:
        slice_devices(args.accelerator_type)
        results = smoke_checks(args.tpu, args.accelerator_type, emit=lambda c: print(c.line(), flush=True))
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
