"""Strategy and precision choice; the two-logical-CPU set-up the multi-replica tests use."""
import pytest

from pretrain.training.distribute import set_logical_cpu_devices

set_logical_cpu_devices(2)  # before TensorFlow creates its devices

import tensorflow as tf  # noqa: E402

from foundation.errors import UserError  # noqa: E402
from pretrain.training.distribute import cpu_flags, cpu_precision, device_kind, keras_policy, make_strategy, resolve_precision  # noqa: E402

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


def test_unreachable_tpu_is_one_line_with_the_fix():
    with pytest.raises(UserError) as info:
        make_strategy(use_tpu=True, tpu_name="no-such-tpu", tpu_zone="europe-west4-a", gcp_project="proj",
                      num_tpu_cores=8)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot reach TPU 'no-such-tpu' (zone=europe-west4-a, project=proj)")
    assert "gcloud compute tpus tpu-vm list" in message and "'local'" in message


def test_precision_names():
    with pytest.raises(UserError, match="'fp8'"):
        resolve_precision("fp8", tf.distribute.get_strategy())
    assert [keras_policy(p) for p in ("float32", "bfloat16", "float16")] == [
        "float32", "mixed_bfloat16", "mixed_float16"]
