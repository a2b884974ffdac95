"""The TPU step rehearsed on the CPU: the small preset under bfloat16 with the whole host loop
compiled by XLA; an op XLA cannot compile named in one error; the GPU path under float16."""
import importlib.metadata
import re

import pytest

from data_prep import vocab_files
from foundation.errors import UserError
from pretrain.training import rehearsal
from pretrain.config import config_path, from_hparams
from rtd_helpers import VOCAB, tiny_config

# XLA's CPU compiler takes minutes and gigabytes for ELECTRA-small's 12 layers at 512 tokens: the
# test keeps every shape of a layer and the per-core batch, with 2 layers and 16 tokens.
SEQ, LAYERS = 16, 2



def _tpu_build() -> bool:
    try:
        return bool(importlib.metadata.version("tensorflow-tpu"))
    except importlib.metadata.PackageNotFoundError:
        return False


# TensorFlow's TPU build has no XLA compiler for the CPU (make test-tpu-env): it rehearses nothing.
TPU_BUILD = _tpu_build()
needs_xla_cpu = pytest.mark.skipif(TPU_BUILD, reason="tensorflow-tpu has no XLA:CPU; rehearsed in `make test`")


@pytest.fixture(scope="module")
def vocab() -> list[str]:
    return vocab_files.load_vocab(str(VOCAB))


@needs_xla_cpu
def test_small_preset_step_as_one_v3_8_core_runs_it(vocab):
    cfg = from_hparams(config_path("small"))
    p = rehearsal.plan(cfg, "tpu", max_seq_length=SEQ, steps=2, num_hidden_layers=LAYERS)
    assert (p.per_replica_batch, p.cfg.train_batch_size, p.precision) == (64, 64, "bfloat16")  # 512 / 8 cores
    assert (p.cfg.hidden_size, p.cfg.intermediate_size, p.cfg.num_attention_heads, p.cfg.embedding_size,
            p.cfg.vocab_size) == (256, 1024, 4, 128, 32200)  # the preset's layer
    trainer = rehearsal.build(p, vocab)
    result = rehearsal.run(trainer, p, vocab)
    assert result.steps == 2 and len(result.losses) == 2
    assert all(9.0 < loss < 200.0 for loss in result.losses)  # finite, about ln(32200) + 50 * ln 2 at the start
    assert (result.compute_dtype, result.variable_dtypes, result.loss_scale) == ("bfloat16", ["float32"], None)
    assert int(trainer.step.numpy()) == 2 and int(trainer.optimizer.iterations.numpy()) == 2
    lines = rehearsal.report(p, result, "configs/small.json")
    assert lines[:4] == [
        "rehearsal of the TPU step on the CPU (configs/small.json): per-replica batch 64 (one v3-8 TPU core), "
        f"max_seq_length {SEQ}, 2 step(s) per host call",
        "scaled: num_hidden_layers scaled down from 12 to 2 for the CPU (each layer's shapes unchanged)",
        f"scaled: max_seq_length scaled down from 512 to {SEQ} for the CPU",
        "scaled: 2 of iterations_per_loop=200 steps per host call (the same compiled loop, run fewer times)"]
    assert lines[4].startswith("ok   whole host loop compiled by XLA (jit_compile=True), no op outside it: 2 steps in")
    assert lines[5] == "ok   bfloat16 compute, float32 variables"


def test_base_preset_gets_32_per_core():
    p = rehearsal.plan(from_hparams(config_path("base")), "tpu", max_seq_length=SEQ)
    assert (p.per_replica_batch, p.cfg.hidden_size, p.precision) == (32, 768, "bfloat16")  # 256 / 8 cores


@needs_xla_cpu
def test_an_op_xla_cannot_compile_is_named(vocab):
    p = rehearsal.plan(tiny_config(vocab_size=len(vocab)), "tpu", steps=2)
    trainer = rehearsal.build(p, vocab)
    plain_mask = trainer.model.mask

    def mask_with_a_string_op(input_ids, input_mask, *, key, rows):  # a host-only op inside the step
        import tensorflow as tf

        masked = plain_mask(input_ids, input_mask, key=key, rows=rows)
        tokens = tf.strings.to_number(tf.strings.as_string(tf.reduce_sum(input_mask)))
        return masked._replace(weights=masked.weights + 0.0 * tokens)

    trainer.model.mask = mask_with_a_string_op
    with pytest.raises(UserError) as info:
        rehearsal.run(trainer, p, vocab)
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(
        r"XLA cannot compile op AsString \(node [\w/]*AsString\) in the training loop; created at "
        r"\S*tests/pretrain/training/test_rehearsal\.py:\d+ in mask_with_a_string_op: a TPU would fail on it; fix: replace it with an "
        r"op XLA compiles, or move it out of the step \(into the input pipeline\)", message), message
    assert int(trainer.step.numpy()) == 0  # nothing ran


@pytest.mark.slow  # 24 s; the TPU step's rehearsal stays in the default run
@needs_xla_cpu
def test_gpu_step_under_float16_loss_scaling_and_xla(vocab):
    cfg = tiny_config(vocab_size=len(vocab), train_batch_size=16)
    p = rehearsal.plan(cfg, "gpu", steps=3)
    assert (p.per_replica_batch, p.precision) == (16, "float16")
    trainer = rehearsal.build(p, vocab)
    result = rehearsal.run(trainer, p, vocab)
    assert (result.compute_dtype, result.variable_dtypes) == ("float16", ["float32"])
    assert all(0.0 < loss < 200.0 for loss in result.losses) and len(result.losses) == 3
    # dynamic loss scaling: starts at 2**15 and halves at each overflowing step, never below 1
    assert result.loss_scale in {2.0 ** k for k in range(0, 16)}
    assert float(trainer.optimizer.dynamic_scale.numpy()) == result.loss_scale
    assert rehearsal.report(p, result, "tiny")[-1] == (
        f"ok   float16 dynamic loss scale {result.loss_scale:g} after 3 steps "
        "(halved at each overflow, that step's update skipped)")


def test_plan_refusals():
    cfg = from_hparams(config_path("small"))
    with pytest.raises(UserError, match="--rehearse-seq-length 1024 exceeds the run's max_seq_length 512"):
        rehearsal.plan(cfg, "tpu", max_seq_length=1024)
    with pytest.raises(UserError, match="--rehearse-layers 13 exceeds the run's num_hidden_layers 12"):
        rehearsal.plan(cfg, "tpu", num_hidden_layers=13)
    with pytest.raises(UserError, match=r"micro batch 512 is not divisible by the 3 GPU replicas"):
        rehearsal.plan(from_hparams({"num_gpus": 3}, base=config_path("small")), "gpu")


@pytest.mark.skipif(not TPU_BUILD, reason="only the TPU build lacks XLA:CPU")
def test_the_tpu_build_says_it_cannot_rehearse_on_the_cpu(vocab):
    p = rehearsal.plan(tiny_config(vocab_size=len(vocab)), "tpu", steps=1)
    with pytest.raises(UserError) as info:
        rehearsal.run(rehearsal.build(p, vocab), p, vocab)
    assert str(info.value) == (
        f"this TensorFlow {importlib.metadata.version('tensorflow-tpu')} has no XLA compiler for the CPU (the TPU "
        "build, tensorflow-tpu, has none), so the rehearsal cannot run here; fix: rehearse in an environment with "
        "the CPU build (pip install -e .[cpu], as `make test` sets up)")
