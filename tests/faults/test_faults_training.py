"""Faults and bad input of the training half (issue 16): NaN and exploding runs, damaged checkpoints
and shards, ids outside the vocab, original checkpoints that do not fit the hparams, failed starts.

Each test runs the `electra-pretrain` / `electra-export` entry points (in process, through
`run_cli`, so stderr and the exit code are the user's) on real NSMC records with a tiny model,
and asserts the exit code, the one `error:` line (or the warning and the fallback) and the bytes
left on disk.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rtd_helpers import (ROOT, TINY_RUN, VOCAB, cli, copy_run, export, files, pretrain, tiny_config,
                         write_nsmc_records, write_tf1_checkpoint)
from rtd_helpers import tiny_run_hparams as hp

DATA_LOSS = "Read less bytes than requested"


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def tensors(prefix) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/")}


@pytest.fixture(scope="module")
def special():
    from data_prep.vocab_files import load_vocab
    from pretrain.model import rtd

    return rtd.special_ids(load_vocab(str(VOCAB)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_nsmc_records(d, max_seq_length=32, num_examples=96, num_shards=3)
    return d


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A finished 6-step run (ckpt-3 and ckpt-6), copied by the tests that damage it."""
    from pretrain.training.run import main

    assert main(["--data-dir", str(data_dir), "--model-name", "trained", "--hparams", hp()]) == 0
    return data_dir / "models" / "trained"


# ---- (2) NaN and exploding runs -------------------------------------------------------------


def test_non_finite_weights_are_never_saved(capsys, data_dir, trained):
    """An update that makes the weights Inf/NaN (the loss of that step is still finite) is not saved."""
    run = copy_run(trained, data_dir, "nanweights")
    before = files(run)
    code, errors, _ = pretrain(capsys, data_dir, "nanweights",
                               hp(num_train_steps=9, save_checkpoints_steps=1, learning_rate=1e45))
    assert code == 2
    assert len(errors) == 1 and re.fullmatch(
        r"error: after step 7 \d+ variables hold NaN/Inf \(e\.g\. \S+\), so they were not saved; training stopped, "
        rf"last good checkpoint: {re.escape(str(run / 'ckpt-6'))}\. Lower learning_rate, check the data, or use "
        r"precision float32", errors[0]), errors
    after = files(run)
    assert sorted(n for n in after if n.startswith("ckpt-")) == sorted(n for n in before if n.startswith("ckpt-"))
    assert all(after[n] == before[n] for n in before if n.startswith("ckpt-"))  # untouched, byte for byte


def test_a_finite_explosion_stops_with_one_line(capsys, data_dir):
    code, errors, _ = pretrain(capsys, data_dir, "explode", hp(num_train_steps=30, learning_rate=300.0,
                                                                num_warmup_steps=0, save_checkpoints_steps=30))
    assert code == 2
    assert len(errors) == 1 and re.fullmatch(
        r"error: training diverged by step \d+: loss \S+ is above 180\.1 \(4x the loss of a uniform guess\); "
        r"training stopped, last good checkpoint: none \(nothing was saved\)\. Lower learning_rate, check the data, "
        r"or use precision float32", errors[0]), errors
    assert not [p for p in (data_dir / "models" / "explode").iterdir() if p.name.startswith("ckpt-")]


# ---- (3) damaged checkpoints and shards ------------------------------------------------------


def test_resume_falls_back_past_a_truncated_checkpoint(capsys, caplog, data_dir, trained):
    run = copy_run(trained, data_dir, "truncresume")
    truncate(run / "ckpt-6.data-00000-of-00001")
    ckpt3 = {n: b for n, b in files(run).items() if n.startswith("ckpt-3")}
    code, errors, _ = pretrain(capsys, data_dir, "truncresume", hp())
    assert (code, errors) == (0, [])
    assert f"checkpoint {run / 'ckpt-6'} is unreadable ({DATA_LOSS}); falling back to the one before it" \
        in caplog.text
    assert f"resumed from {run / 'ckpt-3'} at step 3" in caplog.text
    assert {n: b for n, b in files(run).items() if n.startswith("ckpt-3")} == ckpt3
    redone, original = tensors(run / "ckpt-6"), tensors(trained / "ckpt-6")
    assert redone.keys() == original.keys()
    for name in original:  # steps 4-6 redone from ckpt-3 give the same weights as the uninterrupted run
        np.testing.assert_array_equal(redone[name], original[name], err_msg=name)


def test_export_falls_back_past_a_truncated_checkpoint_or_names_it(capsys, caplog, data_dir, trained, tmp_path):
    run = copy_run(trained, data_dir, "truncexport")
    truncate(run / "ckpt-6.data-00000-of-00001")
    code, errors, _ = export(capsys, run, tmp_path / "chosen", "--step", "6")
    assert (code, errors) == (2, [f"error: checkpoint {run / 'ckpt-6'} is unreadable ({DATA_LOSS}); "
                                  "choose another --step"])
    assert not (tmp_path / "chosen").exists()
    code, errors, _ = export(capsys, run, tmp_path / "latest")
    assert (code, errors) == (0, [])
    assert f"checkpoint {run / 'ckpt-6'} is unreadable ({DATA_LOSS}); falling back to the one before it" \
        in caplog.text
    assert "| training step | 3 of 6 |" in (tmp_path / "latest" / "discriminator" / "README.md").read_text()


def test_export_falls_back_past_a_checkpoint_with_nan(capsys, caplog, data_dir, trained, tmp_path):
    """A NaN checkpoint as an older version could write: skipped like a truncated one."""
    from pretrain.training import checkpoints

    run = copy_run(trained, data_dir, "nanexport")
    model, _, _ = checkpoints.restore_model(str(run))
    weight = model.discriminator_weights()["electra.encoder.layer.0.output.dense.weight"]
    weight.assign(np.full(weight.shape, np.nan, np.float32))
    nan = tf.train.Checkpoint(model=checkpoints.model_checkpoint(model), step=tf.Variable(6, dtype=tf.int64))
    nan.save_counter  # noqa: B018  (created on first access, as every manager-saved checkpoint holds it)
    nan.write(str(run / "ckpt-6"))
    code, errors, _ = export(capsys, run, tmp_path / "hf")
    assert (code, errors) == (0, [])
    assert (f"checkpoint {run / 'ckpt-6'} is non-finite (1 of its tensors hold NaN/Inf, e.g. "
            "discriminator.electra.encoder.layer.0.output.dense.weight); falling back to the one before it") \
        in caplog.text
    assert "| training step | 3 of 6 |" in (tmp_path / "hf" / "discriminator" / "README.md").read_text()


def test_init_from_a_truncated_checkpoint_of_ours_is_one_line(capsys, data_dir, trained):
    run = copy_run(trained, data_dir, "truncinit")
    truncate(run / "ckpt-6.data-00000-of-00001")
    code, errors, _ = pretrain(capsys, data_dir, "fromtrunc", hp(), "--init-checkpoint", str(run))
    assert (code, errors) == (2, [f"error: --init-checkpoint {run / 'ckpt-6'} is unreadable ({DATA_LOSS})"])
    assert not (data_dir / "models" / "fromtrunc").exists()


def test_init_from_a_truncated_original_checkpoint_is_one_line(capsys, data_dir, tmp_path, special):
    from pretrain.model import rtd

    write_tf1_checkpoint(rtd.build_model(tiny_config(**TINY_RUN), special),
                         str(tmp_path / "model.ckpt"))
    truncate(tmp_path / "model.ckpt-1000.data-00000-of-00001")
    code, errors, _ = pretrain(capsys, data_dir, "fromtf1trunc", hp(), "--init-checkpoint", str(tmp_path))
    assert (code, errors) == (2, [f"error: unreadable TF checkpoint {tmp_path / 'model.ckpt-1000'}: {DATA_LOSS}"])
    assert not (data_dir / "models" / "fromtf1trunc").exists()


def test_a_truncated_shard_is_named(capsys, tmp_path):
    write_nsmc_records(tmp_path, max_seq_length=32, num_examples=96, num_shards=3)
    shard = tmp_path / "pretrain_tfrecords" / "pretrain_data.tfrecord-1-of-3"
    shard.write_bytes(shard.read_bytes()[:-100])  # the first record (checked before training) stays whole
    code, errors, _ = pretrain(capsys, tmp_path, "truncshard", hp(num_train_steps=30, save_checkpoints_steps=30))
    assert code == 2
    assert len(errors) == 1 and re.fullmatch(
        rf"error: corrupt record \d+ in {re.escape(str(shard))}: truncated or bad checksum; rebuild the records "
        r"\(electra-build-data\)", errors[0]), errors


# ---- (7) ids outside the vocab under XLA ------------------------------------------------------


def test_ids_outside_the_vocab_are_named_under_xla(capsys, tmp_path):
    """No manifest and a smaller vocab: record 0 of each shard fits, a later record does not."""
    from data_prep import records

    vocab = VOCAB.read_text(encoding="utf-8").splitlines()[:120]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    out = tmp_path / "pretrain_tfrecords"
    out.mkdir()
    rng = np.random.default_rng(0)

    def example(top):
        ids = [2] + rng.integers(5, top, 30).tolist() + [3]
        return records.encode_example(ids, [1] * 32, [0] * 32)

    for i in range(2):
        rows = [example(120) for _ in range(16)]
        if i == 1:
            rows[9] = records.encode_example([2] + [7] * 14 + [150] + [7] * 15 + [3], [1] * 32, [0] * 32)
        records.write_shard(str(out / records.shard_name(i, 2)), rows)
    code, errors, _ = pretrain(capsys, tmp_path, "oov", hp(vocab_size=120, jit_compile=True, num_train_steps=8,
                                                           save_checkpoints_steps=8))
    assert (code, errors) == (2, [f"error: {out / records.shard_name(1, 2)}: token id 150 is outside the vocab "
                                  "(vocab_size 120); the records were built with another vocab: rebuild them or "
                                  "fix vocab_size"])
    assert not [p for p in (tmp_path / "models" / "oov").iterdir() if p.name.startswith("ckpt-")]


# ---- (4) original checkpoints that do not fit, and runs of ours of another size ----------------


@pytest.fixture(scope="module")
def tf1_two_layers(tmp_path_factory, special):
    from pretrain.model import rtd

    d = tmp_path_factory.mktemp("tf1")
    model = rtd.build_model(tiny_config(**{**TINY_RUN, "num_hidden_layers": 2}), special)
    write_tf1_checkpoint(model, str(d / "model.ckpt"))
    return d / "model.ckpt-1000"


def refuse_layers(capsys, data_dir, tf1_two_layers, name):
    code, errors, _ = pretrain(capsys, data_dir, name, hp(), "--init-checkpoint", str(tf1_two_layers))
    assert (code, errors) == (2, [f"error: --init-checkpoint {tf1_two_layers} does not fit the hparams: "
                                  "'num_hidden_layers': checkpoint has 2, hparams say 1"])
    assert not (data_dir / "models" / name).exists()  # (5) nothing written: the fix is not blocked


def test_an_original_checkpoint_with_more_layers_is_refused(capsys, data_dir, tf1_two_layers):
    refuse_layers(capsys, data_dir, tf1_two_layers, "tf1layers")


@pytest.mark.slow
def test_after_a_refused_original_checkpoint_the_corrected_command_runs(capsys, data_dir, tf1_two_layers):
    refuse_layers(capsys, data_dir, tf1_two_layers, "tf1fixed")
    code, errors, _ = pretrain(capsys, data_dir, "tf1fixed", hp(num_hidden_layers=2, num_train_steps=1,
                                                                num_warmup_steps=0),
                               "--init-checkpoint", str(tf1_two_layers))
    assert (code, errors) == (0, [])
    assert (data_dir / "models" / "tf1fixed" / "ckpt-1.index").exists()


def test_an_original_checkpoint_size_mismatch_names_the_typed_key(capsys, data_dir, tf1_two_layers):
    code, errors, _ = pretrain(capsys, data_dir, "tf1size", hp(num_hidden_layers=2, hidden_size=64),
                               "--init-checkpoint", str(tf1_two_layers))
    assert (code, errors) == (2, [f"error: --init-checkpoint {tf1_two_layers} does not fit the hparams: "
                                  "'hidden_size': checkpoint has 32, hparams say 64"])
    assert not (data_dir / "models" / "tf1size").exists()


def test_a_run_of_ours_with_another_size_is_named_as_such(capsys, data_dir, trained):
    code, errors, _ = pretrain(capsys, data_dir, "oursize", hp(hidden_size=64, intermediate_size=128),
                               "--init-checkpoint", str(trained))
    assert (code, errors) == (2, [f"error: --init-checkpoint {trained} is a run of this trainer with other sizes: "
                                  "'hidden_size' is 32 there but 64 in the hparams; 'intermediate_size' is 64 there "
                                  "but 128 in the hparams"])
    assert not (data_dir / "models" / "oursize").exists()


# ---- (5) a failed start leaves nothing that blocks the corrected command -------------------------


def test_a_run_config_without_checkpoints_does_not_block_the_corrected_command(capsys, data_dir):
    from pretrain.training import checkpoints

    model_dir = data_dir / "models" / "crashed"
    checkpoints.write_run_files(str(model_dir), tiny_config(**{**TINY_RUN, "hidden_size": 128}),
                                str(data_dir / "vocab.txt"), None)  # a start that crashed before its first save
    code, errors, _ = pretrain(capsys, data_dir, "crashed", hp(num_train_steps=1, num_warmup_steps=0))
    assert (code, errors) == (0, [])
    assert json.loads((model_dir / "run_config.json").read_text())["hparams"]["hidden_size"] == 32
    assert (model_dir / "ckpt-1.index").exists()


# ---- (8) no CUDA noise before the error line --------------------------------------------------------


def test_a_cpu_only_machine_prints_only_the_error_line(data_dir, tmp_path):
    """The error comes after TF has initialised its devices (the trainer is built), where the cuInit line was."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    missing = tmp_path / "no-such-checkpoint"
    res = subprocess.run([sys.executable, str(ROOT / "run_pretraining.py"), "--data-dir", str(data_dir),
                          "--model-name", "cuinit", "--hparams", hp(), "--init-checkpoint", str(missing)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "cuInit" not in res.stderr
    assert [line for line in res.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --init-checkpoint not found: {missing}"]
    assert not (data_dir / "models" / "cuinit").exists()
