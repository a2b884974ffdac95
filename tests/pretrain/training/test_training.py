"""The trainer end to end on real NSMC records: resume after SIGKILL, refusals, NaN stop,
reproducibility, two replicas == one device, bfloat16, LAMB + accumulation, eval, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from foundation.errors import UserError
from rtd_helpers import ROOT, write_nsmc_records
from rtd_helpers import tiny_run_hparams as hp

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_nsmc_records(d, max_seq_length=32, num_examples=96, num_shards=3)
    write_nsmc_records(d / "heldout", max_seq_length=32, num_examples=32, num_shards=1, skip_lines=5000)
    return d


def run_main(data_dir, name, hparams, *extra):
    from pretrain.training.run import main

    return main(["--data-dir", str(data_dir), "--model-name", name, "--hparams", hparams, *extra])


def _train(data_dir, name, strategy=None, **kw):
    from pretrain.training import trainer as training
    from pretrain.config import from_hparams

    run = training.check_inputs(from_hparams(hp(**kw)), str(data_dir / "pretrain_tfrecords"), str(data_dir / "vocab.txt"))
    return training.train(run, str(data_dir / "models" / name), strategy=strategy)


def _checkpoint_steps(model_dir):
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(str(model_dir))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths] if state else []


def test_sigkill_then_the_same_command_resumes_from_the_saved_step(data_dir):
    model_dir = data_dir / "models" / "killed"
    cmd = [sys.executable, str(ROOT / "run_pretraining.py"), "--data-dir", str(data_dir), "--model-name", "killed",
           "--hparams", hp(num_train_steps=400, save_checkpoints_steps=4, iterations_per_loop=2)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not _checkpoint_steps(model_dir) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = max(_checkpoint_steps(model_dir))
    assert 4 <= saved < 400 and saved % 4 == 0
    out = subprocess.run(cmd[:-1] + [hp(num_train_steps=saved + 4, save_checkpoints_steps=4, iterations_per_loop=2)],
                         env=ENV, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resumed from {model_dir}/ckpt-{saved} at step {saved}" in out.stderr
    assert f"step {saved + 2}/{saved + 4}" in out.stderr  # continues at the next step, not from 0
    assert max(_checkpoint_steps(model_dir)) == saved + 4
    assert f"trained 4 steps to step {saved + 4}" in out.stderr
    # a restart that does not fit is refused before training, naming the field
    bad = subprocess.run(cmd[:-1] + [hp(hidden_size=64, num_attention_heads=2)], env=ENV, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2
    assert "hparam 'hidden_size' is 32 in the saved run but 64 now" in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in bad.stderr
    assert max(_checkpoint_steps(model_dir)) == saved + 4  # nothing lost


def test_seeded_runs_are_reproducible_and_write_summaries_config_and_vocab(data_dir):
    a = _train(data_dir, "seed_a", num_train_steps=3, save_checkpoints_steps=3)
    b = _train(data_dir, "seed_b", num_train_steps=3, save_checkpoints_steps=3)
    assert a.step == b.step == 3
    assert a.metrics == b.metrics and np.isfinite(a.metrics["loss"])
    model_dir = data_dir / "models" / "seed_a"
    cfg = json.loads((model_dir / "run_config.json").read_text())
    assert cfg["hparams"]["hidden_size"] == 32 and cfg["max_predictions_per_seq"] == 4
    assert cfg["data_manifest"]["num_examples"] == 96 and len(cfg["vocab_sha256"]) == 64
    assert (model_dir / "vocab.txt").read_bytes() == (data_dir / "vocab.txt").read_bytes()
    assert json.loads((model_dir / "vocab_settings.json").read_text())["do_lower_case"] is False
    import tensorflow as tf

    tags = {v.tag for f in (model_dir / "train").iterdir() for e in tf.compat.v1.train.summary_iterator(str(f))
            for v in e.summary.value}
    assert {"loss/total", "loss/discriminator", "generator/accuracy", "discriminator/accuracy",
            "discriminator/precision", "discriminator/recall", "discriminator/auc", "learning_rate"} <= tags
    # restore_model for the exporter, and --init-checkpoint: weights only, step restarts at 0
    from pretrain.training.checkpoints import restore_model

    model, rcfg, step = restore_model(str(model_dir))
    assert step == 3 and rcfg.hidden_size == 32
    run_main(data_dir, "cont", hp(num_train_steps=1, num_warmup_steps=0), "--init-checkpoint", str(model_dir))
    cont, _, cstep = restore_model(str(data_dir / "models" / "cont"))
    assert cstep == 1
    w0 = model.discriminator_weights()["electra.encoder.layer.0.output.dense.weight"].numpy()
    w1 = cont.discriminator_weights()["electra.encoder.layer.0.output.dense.weight"].numpy()
    assert 0 < np.abs(w1 - w0).max() < 0.01  # started from the run's weights, then one small step


def test_two_stage_start_the_discriminator_from_an_mlm_runs_generator(data_dir):
    """--init-discriminator-from-generator: an RTD run whose discriminator encoder starts as an MLM run's generator
    (ELECTRA's two-stage training); a generator of another size, or no --init-checkpoint, is refused first."""
    from pretrain.config import from_hparams
    from pretrain.training import trainer as training
    from pretrain.training.checkpoints import restore_model

    same_size = {"generator_hidden_size": 1.0, "intermediate_size": 128, "num_warmup_steps": 0}
    run_main(data_dir, "mlm_stage", hp(num_train_steps=3, disc_weight=0.0, **same_size))
    mlm, _, _ = restore_model(str(data_dir / "models" / "mlm_stage"))
    run = training.check_inputs(from_hparams(json.loads(hp(**same_size))), str(data_dir / "pretrain_tfrecords"),
                                str(data_dir / "vocab.txt"))
    trainer = training.make_trainer(run)
    text = training.init_weights(trainer, str(data_dir / "models" / "mlm_stage"), discriminator_from_generator=True)
    disc, gen = trainer.model.discriminator_weights(), mlm.generator_weights()
    encoder = [n for n in disc if n.startswith(("electra.encoder.", "electra.embeddings_project."))]
    assert len(encoder) == 18 and text.endswith(f"; discriminator encoder from the generator ({len(encoder)} weights)")
    for name in encoder + ["electra.embeddings.word_embeddings.weight"]:
        np.testing.assert_array_equal(disc[name].numpy(), gen[name].numpy(), err_msg=name)
    query = "electra.encoder.layer.0.attention.self.query.weight"  # not the MLM run's own, never-trained discriminator
    assert np.abs(disc[query].numpy() - mlm.discriminator_weights()[query].numpy()).max() > 0.01
    head = "discriminator_predictions.dense.weight"  # left as loaded: the MLM run's own (untrained) head
    np.testing.assert_array_equal(disc[head].numpy(), mlm.discriminator_weights()[head].numpy())

    run_main(data_dir, "rtd_stage", hp(num_train_steps=1, **same_size), "--init-checkpoint",
             str(data_dir / "models" / "mlm_stage"), "--init-discriminator-from-generator")
    rtd, _, step = restore_model(str(data_dir / "models" / "rtd_stage"))
    assert step == 1 and 0 < np.abs(rtd.discriminator_weights()[query].numpy() - gen[query].numpy()).max() < 0.01

    with pytest.raises(UserError, match=r"needs the generator the discriminator's size \(generator_hidden_size 1.0, "
                                        r"generator_layers 1.0\); generator vs discriminator: hidden_size 16 vs 32$"):
        run_main(data_dir, "half_gen", hp(num_warmup_steps=0), "--init-checkpoint",
                 str(data_dir / "models" / "mlm_stage"), "--init-discriminator-from-generator")
    assert not (data_dir / "models" / "half_gen" / "run_config.json").exists()
    with pytest.raises(UserError, match="--init-discriminator-from-generator needs --init-checkpoint"):
        run_main(data_dir, "no_source", hp(**same_size), "--init-discriminator-from-generator")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_dir):
    _train(data_dir, "nan", num_train_steps=3, save_checkpoints_steps=3)
    with pytest.raises(UserError, match=r"non-finite loss at step \d+; training stopped, last good checkpoint: .*ckpt-3"):
        _train(data_dir, "nan", num_train_steps=12, save_checkpoints_steps=3, learning_rate=1e30, clip_norm=0.0)
    assert max(_checkpoint_steps(data_dir / "models" / "nan")) == 3
    from pretrain.training.checkpoints import restore_model

    model, _, step = restore_model(str(data_dir / "models" / "nan"))
    assert step == 3 and all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_do_eval_on_heldout_shards_writes_metrics_json(data_dir, capsys):
    run_main(data_dir, "evalrun", hp(num_train_steps=2, save_checkpoints_steps=2))
    run_main(data_dir, "evalrun", hp(), "--no-do-train", "--do-eval", "--eval-data-dir",
             str(data_dir / "heldout" / "pretrain_tfrecords"))
    result = json.loads((data_dir / "models" / "evalrun" / "eval_results.json").read_text())
    assert result["step"] == 2 and result["tokens"] > 0 and 0 <= result["discriminator_auc"] <= 1
    assert result["masked_tokens"] > 0 and json.loads(capsys.readouterr().out) == result


@pytest.mark.slow  # 15 s; LAMB's update is checked by value in test_optimization
def test_lamb_with_gradient_accumulation_under_bfloat16(data_dir):
    res = _train(data_dir, "lamb", optimizer="lamb", gradient_accumulation_steps=2, num_train_steps=2,
                 save_checkpoints_steps=2, precision="bfloat16")
    assert res.step == 2 and np.isfinite(res.metrics["loss"])
    from pretrain.training.checkpoints import restore_model

    model, _, _ = restore_model(str(data_dir / "models" / "lamb"))
    assert all(v.dtype == "float32" for v in model.trainable_variables)


@pytest.mark.parametrize("change, message", [
    ({"max_seq_length": 64, "max_position_embeddings": 64}, "records have max_seq_length 32, expected 64"),
    ({"vocab_size": 30000}, "'vocab_size' = 30000 but .*vocab.txt has 32200 tokens"),
    ({"hidden_sise": 1}, "unknown hparam 'hidden_sise'"),
])
def test_bad_input_is_one_clear_error(data_dir, change, message):
    with pytest.raises(UserError, match=message):
        run_main(data_dir, "bad", hp(**change))
    assert not (data_dir / "models" / "bad").exists()  # refused before anything is written


def test_no_records_and_unwritable_model_dir(tmp_path, data_dir):
    (tmp_path / "pretrain_tfrecords").mkdir()
    (tmp_path / "vocab.txt").write_bytes((data_dir / "vocab.txt").read_bytes())
    with pytest.raises(UserError, match="no pretrain_data.tfrecord-I-of-N files in"):
        run_main(tmp_path, "x", hp())
    (data_dir / "models").mkdir(exist_ok=True)
    (data_dir / "models" / "blocked").write_text("a file where the model dir should be")
    with pytest.raises(UserError, match="cannot create output directory .*blocked"):
        run_main(data_dir, "blocked", hp())


MIRRORED = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
from pretrain.training.distribute import set_logical_cpu_devices
set_logical_cpu_devices(2)
import tensorflow as tf
from pretrain.training import trainer as training
from pretrain.config import from_hparams
data_dir, hparams = sys.argv[1], sys.argv[2]
run = training.check_inputs(from_hparams(hparams), data_dir + "/pretrain_tfrecords", data_dir + "/vocab.txt")
out = {}
for name, strategy in (("one", tf.distribute.get_strategy()),
                       ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    trainer = training.make_trainer(run, strategy)
    it = trainer.train_iterator(run.files, 0, run.examples_per_shard)
    losses = []
    for _ in range(3):
        acc = trainer.train_steps(it, 1).outputs
        losses.append(float(acc.disc_loss_sum / acc.disc_count))
    w = trainer.model.discriminator_weights()["electra.encoder.layer.0.intermediate.dense.weight"].numpy()
    out[name] = {"losses": losses, "replicas": strategy.num_replicas_in_sync, "w": w.ravel()[:50].tolist()}
print(json.dumps(out))
"""


def test_two_replicas_give_the_same_losses_as_one_device(data_dir, tmp_path):
    """With dropout on: masks, samples and dropout are hashed from global example ids, so a split is exact."""
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    res = subprocess.run([sys.executable, str(script), str(data_dir),
                          hp(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)],
                         env=ENV, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["one"]["replicas"] == 1 and out["two"]["replicas"] == 2
    np.testing.assert_allclose(out["two"]["losses"], out["one"]["losses"], rtol=1e-4)
    assert len(set(out["one"]["losses"])) == 3  # the weights did change between steps
    np.testing.assert_allclose(out["two"]["w"], out["one"]["w"], atol=1e-5)


def test_degenerate_training_warnings_after_warmup(caplog):
    import logging

    from pretrain.training import trainer as training
    from pretrain.config import from_hparams

    cfg = from_hparams(hp(num_warmup_steps=2))
    m = {"loss": 1.0, "generator_loss": 1.0, "discriminator_loss": 0.001, "generator_accuracy": 0.0,
         "discriminator_auc": 0.99, "replaced_fraction": 0.135, "discriminator_base_rate_loss": 0.3958}
    with caplog.at_level(logging.INFO):
        training._log_progress(cfg, 2, m, 1e-3, 10.0, 96)  # still warming up: no warning
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        training._log_progress(cfg, 3, m, 1e-3, 10.0, 96)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("discriminator loss 0.001 is ~0" in w for w in warnings)
    assert any("generator accuracy 0 is ~0" in w for w in warnings)
    assert "step 3/6 (epoch 0.25)" in caplog.records[-3].getMessage()


def test_a_discriminator_at_its_base_rate_is_reported(caplog):
    import logging

    from pretrain.training import trainer as training
    from pretrain.config import from_hparams

    cfg = from_hparams(hp(num_warmup_steps=2))
    m = {"loss": 20.0, "generator_loss": 7.0, "discriminator_loss": 0.395, "generator_accuracy": 0.08,
         "discriminator_auc": 0.55, "replaced_fraction": 0.135, "discriminator_base_rate_loss": 0.3958}
    with caplog.at_level(logging.WARNING):
        training._log_progress(cfg, 3, m, 1e-4, 10.0, None)
    assert "at the base rate 0.3958 (13.5% of tokens replaced)" in caplog.text
    assert "set adam_bias_correction" in caplog.text  # the original AdamW: the hint for short runs
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        training._log_progress(from_hparams(hp(num_warmup_steps=2, adam_bias_correction=True)), 3, m, 1e-4, 10.0, None)
    assert "at the base rate" in caplog.text and "adam_bias_correction" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        training._log_progress(cfg, 3, dict(m, discriminator_loss=0.30), 1e-4, 10.0, None)
        training._log_progress(cfg, 2, m, 1e-4, 10.0, None)  # still warming up
    assert "base rate" not in caplog.text


def test_resumed_input_continues_at_the_data_position(data_dir):
    from data_prep import records
    from pretrain.training import data

    files = records.list_shards(str(data_dir / "pretrain_tfrecords"))
    counts = records.read_manifest(str(data_dir / "pretrain_tfrecords")).examples_per_shard

    def batches(skip, n):
        ds = data.train_dataset(files, max_seq_length=32, batch_size=8, seed=5, shuffle_buffer=64, vocab_size=32200,
                                examples_per_shard=counts, skip_examples=skip)
        return [b["input_ids"].numpy() for b in ds.take(n)]

    fresh = batches(0, 30)  # 240 examples: 2.5 passes over the 96 records, reshuffled each pass
    assert len({tuple(r) for b in fresh for r in b}) == 96
    resumed = batches(3 * 8, 27)
    for a, b in zip(fresh[3:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(batches(0, 1)[0], data.train_dataset(
        files, max_seq_length=32, batch_size=8, seed=6, shuffle_buffer=64, vocab_size=32200,
        examples_per_shard=counts).take(1).get_single_element()["input_ids"])


SLOW_START = r"""
import sys, time
import tensorflow as tf
from pretrain.training import data, trainer as training
from pretrain.config import from_hparams
data_dir, hparams, slow_batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
real = data.train_dataset


def slow_dataset(*args, **kwargs):  # the input pipeline waits `seconds` before batch `slow_batch`
    def wait(i, batch):
        done = tf.py_function(lambda i: time.sleep(seconds if int(i) == slow_batch else 0) or 0, [i], tf.int32)
        with tf.control_dependencies([done]):
            return {k: tf.identity(v) for k, v in batch.items()}
    return real(*args, **kwargs).enumerate().map(wait)


data.train_dataset = slow_dataset
run = training.check_inputs(from_hparams(hparams), data_dir + "/pretrain_tfrecords", data_dir + "/vocab.txt")
print("trained to", training.train(run, data_dir + "/models/" + sys.argv[5]).step)
"""


def test_the_watchdog_counts_gaps_between_host_calls_not_the_start(data_dir, tmp_path):
    """watchdog_seconds 3: an input start-up of 8 s (the first batch) does not fire it; the input
    hanging 600 s at step 3 does, with the restart exit status and the last finished step."""
    from pretrain.training.watchdog import EXIT_CODE

    script = tmp_path / "slow_start.py"
    script.write_text(SLOW_START)
    hparams = hp(num_train_steps=4, iterations_per_loop=1, save_checkpoints_steps=2, watchdog_seconds=3)
    procs = {name: subprocess.Popen([sys.executable, str(script), str(data_dir), hparams, slow, seconds, name],
                                    env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, slow, seconds in (("slow_start", "0", "8"), ("hangs", "2", "600"))}
    out = {name: proc.communicate(timeout=300) for name, proc in procs.items()}
    assert procs["slow_start"].returncode == 0, out["slow_start"][1][-3000:]
    assert out["slow_start"][0].strip().endswith("trained to 4") and "watchdog" not in out["slow_start"][1]
    assert procs["hangs"].returncode == EXIT_CODE, out["hangs"][1][-3000:]
    assert "watchdog: no progress for" in out["hangs"][1]
    assert "training: last finished step 2," in out["hangs"][1]


def test_checkpoints_by_wall_clock_time_as_well_as_steps(data_dir, monkeypatch):
    """save_checkpoints_secs 1 with host calls slowed to ~0.6 s: checkpoints appear every second or
    two of steps, long before save_checkpoints_steps 100; with 0 only the last step is saved."""
    from pretrain.training import trainer as training

    original = training.Trainer.train_steps

    def slow(self, iterator, num_steps):
        time.sleep(0.6)
        return original(self, iterator, num_steps)

    monkeypatch.setattr(training.Trainer, "train_steps", slow)
    kw = dict(num_train_steps=5, iterations_per_loop=1, save_checkpoints_steps=100, keep_checkpoint_max=10)
    _train(data_dir, "by_time", save_checkpoints_secs=1.0, **kw)
    saved = _checkpoint_steps(data_dir / "models" / "by_time")
    assert saved[-1] == 5 and 1 <= len(saved[:-1]) <= 3, saved
    assert all(0 < s < 5 and s % 100 for s in saved[:-1])  # saved by time, not by step count
    _train(data_dir, "by_steps", save_checkpoints_secs=0.0, **kw)
    assert _checkpoint_steps(data_dir / "models" / "by_steps") == [5]


def test_profile_of_one_host_call_for_tensorboard(data_dir):
    """profile_host_call 2: the second host call's trace lands where TensorBoard's Profile tab reads it."""
    _train(data_dir, "profiled", num_train_steps=3, iterations_per_loop=1, save_checkpoints_steps=3,
           profile_host_call=2)
    traces = list((data_dir / "models" / "profiled" / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000


def _summary(model_dir, tag):
    import tensorflow as tf

    return {e.step: float(tf.make_ndarray(v.tensor)) for f in sorted((model_dir / "train").iterdir())
            for e in tf.compat.v1.train.summary_iterator(str(f)) for v in e.summary.value if v.tag == tag}


@pytest.mark.slow  # ~20 s: three short runs
def test_a_decay_branch_continues_a_long_runs_checkpoint_and_anneals_to_zero(data_dir):
    """WSD long run stopped at step 6; a branch from its step-3 checkpoint (weights, optimiser, step) makes
    step 4 exactly as the long run did, then decays to 0 at step 7."""
    from pretrain.training.checkpoints import restore_model

    wsd = dict(lr_schedule="wsd", num_warmup_steps=2, save_checkpoints_steps=1, keep_checkpoint_max=0)
    run_main(data_dir, "long", hp(num_train_steps=1000, decay_steps=100, **wsd), "--stop-at-step", "6")
    long_dir, branch_dir = data_dir / "models" / "long", data_dir / "models" / "branch"
    assert _checkpoint_steps(long_dir) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(UserError, match="is at step 3, not before num_train_steps 3"):
        run_main(data_dir, "early", hp(num_train_steps=3, decay_steps=1, **wsd), "--init-from", f"{long_dir}/ckpt-3")
    with pytest.raises(UserError, match="'hidden_size' is 32 in the saved run but 64 now"):
        run_main(data_dir, "wide", hp(num_train_steps=7, decay_steps=4, hidden_size=64, intermediate_size=128, **wsd),
                 "--init-from", f"{long_dir}/ckpt-3")
    run_main(data_dir, "branch", hp(num_train_steps=7, decay_steps=4, **wsd), "--init-from", f"{long_dir}/ckpt-3")
    assert _checkpoint_steps(branch_dir) == [4, 5, 6, 7]
    name = "electra.encoder.layer.0.output.dense.weight"
    weights = {(d.name, s): restore_model(str(d), s)[0].discriminator_weights()[name].numpy()
               for d, s in ((long_dir, 3), (long_dir, 4), (branch_dir, 4), (branch_dir, 7))}
    np.testing.assert_allclose(weights["branch", 4], weights["long", 4], rtol=0, atol=1e-7)
    assert np.abs(weights["branch", 4] - weights["long", 3]).max() > 0
    # the rate after each step (the next update's): the long run's peak, then linear to 0 at the end
    assert _summary(long_dir, "learning_rate")[4] == pytest.approx(1e-3)
    lrs = _summary(branch_dir, "learning_rate")
    assert [lrs[s] for s in (4, 5, 6, 7)] == pytest.approx([7.5e-4, 5e-4, 2.5e-4, 0.0])
    saved = json.loads((branch_dir / "run_config.json").read_text())["hparams"]
    assert saved["branch_from"] == f"{long_dir}/ckpt-3" and saved["lr_schedule"] == "wsd"


def test_each_training_warning_is_said_once_in_a_run(caplog):
    import logging

    from pretrain.training import trainer as training
    from pretrain.config import from_hparams

    cfg = from_hparams(hp(num_warmup_steps=2))
    m = {"loss": 20.0, "generator_loss": 7.0, "discriminator_loss": 0.395, "generator_accuracy": 0.0,
         "discriminator_auc": 0.55, "replaced_fraction": 0.135, "discriminator_base_rate_loss": 0.3958}
    warned: set[str] = set()
    with caplog.at_level(logging.INFO):
        for step in (3, 4, 5):
            training._log_progress(cfg, step, m, 1e-4, 10.0, None, warned)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("step " in t and "/6" in t for t in messages) == 3  # every step line
    assert sum("at the base rate" in t for t in messages) == 1
    assert sum("generator accuracy 0 is ~0" in t for t in messages) == 1
    assert warned == {"base_rate", "generator"}


def test_a_warned_state_that_ends_is_said_once_more_as_info(caplog):
    import logging

    from pretrain.training import trainer as training
    from pretrain.config import from_hparams

    cfg = from_hparams(hp(num_warmup_steps=2))
    m = {"loss": 20.0, "generator_loss": 7.0, "discriminator_loss": 0.395, "generator_accuracy": 0.08,
         "discriminator_auc": 0.55, "replaced_fraction": 0.135, "discriminator_base_rate_loss": 0.3958}
    warned: set[str] = set()
    with caplog.at_level(logging.INFO):
        training._log_progress(cfg, 3, m, 1e-4, 10.0, None, warned)
        training._log_progress(cfg, 4, dict(m, discriminator_loss=0.33), 1e-4, 10.0, None, warned)
        training._log_progress(cfg, 5, dict(m, discriminator_loss=0.33), 1e-4, 10.0, None, warned)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "/6 (epoch" not in r.getMessage()]
    assert [level for level, _ in said] == ["WARNING", "INFO"]
    assert said[1][1] == "step 4: discriminator loss 0.3300 is below its base rate 0.3958: it uses context now"
    assert warned == set()
