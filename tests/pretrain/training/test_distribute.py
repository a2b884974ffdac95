"""Strategy and precision choice; the two-logical-CPU set-up the multi-replica tests use."""
import subprocess
import sys

import pytest

from pretrain.training.distribute import set_logical_cpu_devices

set_logical_cpu_devices(2)  # before TensorFlow creates its devices

import tensorflow as tf  # noqa: E402

from foundation.errors import UserError  # noqa: E402
from pretrain.training.distribute import (Compute, cpu_flags, cpu_precision, device_kind, keras_policy,  # noqa: E402
                                          make_strategy, resolve_compute, resolve_jit_compile, resolve_precision)
from tpu_metadata import metadata_server, nothing_listening, tpu_vm  # noqa: E402

CPU_ONLY = dict(use_tpu=False, tpu_name=None, tpu_zone=None, gcp_project=None, num_tpu_cores=8)


def test_cpu_gets_default_strategy_and_the_precision_its_flags_allow():
    strategy = make_strategy(**CPU_ONLY)
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert device_kind(strategy) == "cpu"
    assert resolve_precision("auto", strategy, flags=frozenset({"avx2", "avx512f"})) == "float32"
    assert resolve_precision("auto", strategy, flags=frozenset({"avx512f", "avx512_bf16"})) == "bfloat16"
    assert resolve_precision("auto", strategy, flags=frozenset({"amx_tile", "amx_bf16"})) == "bfloat16"
    # XLA on the CPU multiplies bfloat16 no faster than float32: auto keeps float32 there
    assert resolve_precision("auto", strategy, flags=frozenset({"avx512_bf16"}), jit_compile=True) == "float32"
    assert resolve_precision("auto", strategy) == cpu_precision(cpu_flags())
    assert resolve_precision("bfloat16", strategy) == "bfloat16"


def test_auto_resolves_to_the_fastest_measured_setting_per_device():
    """On a CPU: no XLA, bfloat16 only with native bfloat16 instructions; on a TPU: XLA; explicit values win."""
    strategy = make_strategy(**CPU_ONLY)
    bf16, plain = frozenset({"avx512f", "avx512_bf16"}), frozenset({"avx2"})
    assert resolve_compute("auto", "auto", strategy, flags=bf16) == Compute("bfloat16", False)
    assert resolve_compute("auto", "auto", strategy, flags=plain) == Compute("float32", False)
    assert resolve_compute("auto", True, strategy, flags=bf16) == Compute("float32", True)
    assert resolve_compute("bfloat16", True, strategy, flags=plain) == Compute("bfloat16", True)
    assert [resolve_jit_compile("auto", kind) for kind in ("cpu", "gpu", "tpu")] == [False, False, True]
    assert [resolve_jit_compile(False, "tpu"), resolve_jit_compile(True, "cpu")] == [False, True]


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\nbugs\t\t: spectre\n")
    assert cpu_flags(str(info)) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_precision(cpu_flags(str(info))) == "bfloat16"
    assert cpu_flags(str(tmp_path / "absent")) == frozenset()  # not Linux: float32
    assert cpu_precision(frozenset()) == "float32"


def test_two_logical_cpus_give_two_replicas():
    set_logical_cpu_devices(2)  # idempotent once done
    assert len(tf.config.list_logical_devices("CPU")) == 2
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    assert device_kind(strategy) == "cpu"
    per_replica = strategy.run(lambda: tf.distribute.get_replica_context().replica_id_in_sync_group + 1)
    assert int(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)) == 3


def test_asking_for_absent_gpus_is_an_error():
    with pytest.raises(UserError, match="num_gpus=1 but only 0 GPU"):
        make_strategy(**CPU_ONLY | {"num_gpus": 1})
    assert make_strategy(**CPU_ONLY | {"num_gpus": 0}).num_replicas_in_sync == 1


@pytest.fixture()
def tpu_calls(monkeypatch):
    """Records every TPUClusterResolver made and every initialize_tpu_system call (both still run)."""
    calls = []
    resolver_cls, initialize = tf.distribute.cluster_resolver.TPUClusterResolver, tf.tpu.experimental.initialize_tpu_system

    def resolver(*args, **kwargs):
        calls.append(("resolver", kwargs.get("tpu")))
        return resolver_cls(*args, **kwargs)

    def init(*args, **kwargs):
        calls.append(("initialize_tpu_system",))
        return initialize(*args, **kwargs)

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver)
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", init)
    return calls


def test_local_tpu_with_more_cores_than_a_host_is_refused_before_the_tpu_is_touched(tpu_calls, monkeypatch):
    """`tpu_name: local` with num_tpu_cores 32 cannot work on any host; off a TPU VM too."""
    monkeypatch.setenv("GCE_METADATA_IP", nothing_listening())
    with pytest.raises(UserError) as info:
        make_strategy(use_tpu=True, tpu_name="local", tpu_zone=None, gcp_project=None, num_tpu_cores=32)
    assert str(info.value).startswith("num_tpu_cores=32 but tpu_name 'local' reaches only one host's (at most 8) TPU")
    assert tpu_calls == []


@pytest.mark.parametrize("worker,tpu_name,load,start", [
    (2, "my-pod", "0", "this is worker 2 of the multi-host slice v3-32,"),  # --worker=all on host 2
    (0, "local", "0", "tpu_name 'local' on the multi-host slice v3-32 reaches only this host's 8 of its 32 cores"),
    (0, "my-pod", None, "TPU_LOAD_LIBRARY is unset on worker 0 of the multi-host slice v3-32"),
])
def test_a_pod_slice_host_refuses_what_cannot_work_before_the_tpu_is_touched(worker, tpu_name, load, start, tpu_calls,
                                                                              monkeypatch):
    if load is None:
        monkeypatch.delenv("TPU_LOAD_LIBRARY", raising=False)
    else:
        monkeypatch.setenv("TPU_LOAD_LIBRARY", load)
    with metadata_server(tpu_vm("v3-32", worker)) as address:
        monkeypatch.setenv("GCE_METADATA_IP", address)
        with pytest.raises(UserError) as info:
            make_strategy(use_tpu=True, tpu_name=tpu_name, tpu_zone=None, gcp_project=None, num_tpu_cores=32)
    assert str(info.value).startswith(start) and "\n" not in str(info.value)
    assert tpu_calls == []


def test_worker_0_of_a_pod_slice_goes_on_to_the_named_tpu(tpu_calls, monkeypatch):
    """The one client: the TPU's name reaches TPUClusterResolver (which cannot find it here)."""
    monkeypatch.setenv("TPU_LOAD_LIBRARY", "0")
    with metadata_server(tpu_vm("v3-32", 0)) as address:
        monkeypatch.setenv("GCE_METADATA_IP", address)
        with pytest.raises(UserError, match="^cannot reach TPU 'my-pod'"):
            make_strategy(use_tpu=True, tpu_name="my-pod", tpu_zone="europe-west4-a", gcp_project="proj",
                          num_tpu_cores=32)
    assert tpu_calls[0] == ("resolver", "my-pod")


def test_unreachable_tpu_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setenv("GCE_METADATA_IP", nothing_listening())
    with pytest.raises(UserError) as info:
        make_strategy(use_tpu=True, tpu_name="no-such-tpu", tpu_zone="europe-west4-a", gcp_project="proj",
                      num_tpu_cores=8)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot reach TPU 'no-such-tpu' (zone=europe-west4-a, project=proj)")
    assert "gcloud compute tpus tpu-vm list" in message and "'local'" in message


def test_a_tpu_held_by_another_process_is_named_as_such(monkeypatch, tmp_path):
    """libtpu's lock held elsewhere (here: a process holding a lockf on a stand-in lock file): the advice
    is about that process, not about tpu_name."""
    from pretrain.training import distribute

    lockfile = tmp_path / "libtpu_lockfile"
    lockfile.write_text("")
    monkeypatch.setattr(distribute, "LIBTPU_LOCKFILE", str(lockfile))
    assert not distribute.tpu_lock_taken()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
                               "fcntl.lockf(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
                               str(lockfile)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert distribute.tpu_lock_taken()
        monkeypatch.setenv("GCE_METADATA_IP", nothing_listening())
        with pytest.raises(UserError) as info:
            make_strategy(use_tpu=True, tpu_name="local", tpu_zone=None, gcp_project=None, num_tpu_cores=8)
        assert str(info.value).endswith(
            f"another process holds this VM's TPU (libtpu's lock {lockfile}): a run started by scripts/train.sh "
            "(scripts/stop.sh stops it) or any Python that imported TensorFlow's TPU build; find it with: sudo lsof "
            f"-w /dev/accel* {lockfile}")
    finally:
        holder.kill()
        holder.wait()
    assert not distribute.tpu_lock_taken()


def test_precision_names():
    with pytest.raises(UserError, match="'fp8'"):
        resolve_precision("fp8", tf.distribute.get_strategy())
    assert [keras_policy(p) for p in ("float32", "bfloat16", "float16")] == [
        "float32", "mixed_bfloat16", "mixed_float16"]


def test_use_tpu_off_a_tpu_vm_says_use_tpu_false_is_the_fix(tpu_calls, monkeypatch):
    """`electra-demo --preset small` on a CPU: the preset's use_tpu, no TPU VM, no TPU named."""
    monkeypatch.setenv("GCE_METADATA_IP", nothing_listening())
    with pytest.raises(UserError) as info:
        make_strategy(use_tpu=True, tpu_name=None, tpu_zone=None, gcp_project=None, num_tpu_cores=8)
    message = str(info.value)
    assert message.startswith("cannot reach TPU 'local' (zone=None, project=None): ") and "\n" not in message
    assert message.endswith("; this machine is not a TPU VM: to train on its CPU or GPU set \"use_tpu\": false "
                            "(--hparams '{\"use_tpu\": false}'); or run on the TPU VM, or set tpu_name to the name of "
                            "a TPU node")
