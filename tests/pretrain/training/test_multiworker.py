"""Training across hosts: two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy
(CPU) make the same steps as one process on the same global batch; only the chief's
checkpoint lands in the model directory. Plus reading `TF_CONFIG` (fast).

This file is also the worker program: `python test_multiworker.py ROLE ...`.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from foundation.errors import UserError
from pretrain.training import multiworker
from rtd_helpers import ROOT, write_nsmc_records

HPARAMS = {"model_size": "small", "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 1, "intermediate_size": 64, "generator_hidden_size": 0.5, "max_seq_length": 32,
           "max_position_embeddings": 32, "train_batch_size": 8, "eval_batch_size": 8, "num_train_steps": 3,
           "num_warmup_steps": 1, "learning_rate": 1e-3, "use_tpu": False, "precision": "float32",
           "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
STEPS = 3


def cluster(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


# --- TF_CONFIG (read by TensorFlow's TFConfigClusterResolver) ------------------------------
def info_of(monkeypatch, text):
    monkeypatch.setenv("TF_CONFIG", text)
    return multiworker.worker_info()


def test_worker_info_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert multiworker.worker_info() is None
    assert info_of(monkeypatch, cluster([1], 0)) is None  # one worker: a single host
    w0, w1 = (info_of(monkeypatch, cluster([1, 2], i)) for i in (0, 1))
    assert w0 == multiworker.WorkerInfo("worker", 0, 2, False) and w0.is_chief
    assert w1 == multiworker.WorkerInfo("worker", 1, 2, False) and not w1.is_chief
    with_chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 0}}
    info = info_of(monkeypatch, json.dumps(with_chief))
    assert info.num_workers == 2 and not info.is_chief  # worker 0 is not chief when a chief is named
    assert info_of(monkeypatch, json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})).is_chief


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}), "TF_CONFIG names no 'task' {'type', 'index'}"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}}),
     "task type(s) ['ps']"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}),
     "task index 2 is out of range for 2 worker address(es)"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}),
     "task type 'chief' is not in the cluster"),
])
def test_bad_tf_config_is_one_line(monkeypatch, text, message):
    with pytest.raises(UserError) as exc:
        info_of(monkeypatch, text)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_checkpoint_dir_is_the_model_dir_only_for_the_chief(monkeypatch, tmp_path):
    chief, other = (info_of(monkeypatch, cluster([1, 2], i)) for i in (0, 1))
    with multiworker.checkpoint_dir(str(tmp_path), chief) as d:
        assert d == str(tmp_path)
    with multiworker.checkpoint_dir(str(tmp_path), None) as d:
        assert d == str(tmp_path)
    with multiworker.checkpoint_dir(str(tmp_path), other) as d:
        assert d != str(tmp_path) and os.path.isdir(d)
        open(os.path.join(d, "x"), "w").close()
    assert not os.path.exists(d)


# --- two real workers --------------------------------------------------------------------
def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def worker_main(role, data_dir, model_dir, ports_json, index):
    """One process: the trainer's compiled step on a fixed sequence of global batches."""
    ports = json.loads(ports_json)
    if role == "worker":
        os.environ["TF_CONFIG"] = cluster(ports, int(index))
    import tensorflow as tf

    from data_prep import records
    from pretrain.training import checkpoints, trainer as training
    from pretrain.config import from_hparams

    info = multiworker.worker_info()
    strategy = multiworker.make_multiworker_strategy() if info else tf.distribute.get_strategy()
    run = training.check_inputs(from_hparams(json.dumps(HPARAMS)), f"{data_dir}/pretrain_tfrecords",
                                f"{data_dir}/vocab.txt")
    trainer = training.make_trainer(run, strategy)
    examples = records.load_examples(f"{data_dir}/pretrain_tfrecords")  # {name: [N, L]}
    batch = HPARAMS["train_batch_size"]

    def dataset(ctx):
        """This input pipeline's rows of each global batch: pipeline p gets rows [p*b, (p+1)*b).

        Endless, as the trainer's own data: a finite dataset makes MultiWorkerMirroredStrategy
        drop the static batch size (uneven ends), which the step needs.
        """
        b = ctx.get_per_replica_batch_size(batch)
        p = ctx.input_pipeline_id
        rows = np.concatenate([np.arange(s * batch + p * b, s * batch + (p + 1) * b) for s in range(STEPS)])
        sliced = {name: examples[name][rows].astype(np.int32) for name in records.FEATURES}
        return tf.data.Dataset.from_tensor_slices(sliced).batch(b, drop_remainder=True).repeat()

    iterator = iter(strategy.distribute_datasets_from_function(dataset))
    losses = []
    for _ in range(STEPS):
        acc = trainer._train_loop(iterator, tf.constant(1, tf.int64))[0]  # summed outputs of the step
        losses.append([float(acc.disc_loss_sum / acc.disc_count), float(acc.mlm_loss_sum / acc.mlm_count)])
    with multiworker.checkpoint_dir(model_dir, info) as save_dir:
        path = checkpoints.make_manager(trainer.checkpoint, save_dir, 1).save(checkpoint_number=STEPS)
    w = trainer.model.discriminator_weights()["electra.encoder.layer.0.intermediate.dense.weight"].numpy()
    print(json.dumps({"losses": losses, "replicas": strategy.num_replicas_in_sync, "saved": path,
                      "chief": bool(info is None or info.is_chief), "w": w.ravel()[:50].tolist()}), flush=True)
    if info is not None:
        leave_together(model_dir, info)


def leave_together(model_dir, info):
    """The chief hosts the cluster's coordination service: it exits after the other workers, or
    their last heartbeats fail and they abort after their work is done."""
    import time

    flag = f"{model_dir}.done-{info.task_index}"
    if not info.is_chief:
        open(flag, "w").close()
        return
    others = [f"{model_dir}.done-{i}" for i in range(1, info.num_workers)]
    deadline = time.monotonic() + 120
    while not all(os.path.exists(f) for f in others) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # let them finish exiting


@pytest.mark.slow  # two TF processes, ~150 s on this loaded machine; TF_CONFIG and chief-only saving stay in the default suite
def test_two_workers_make_the_same_steps_as_one_process_and_only_the_chief_saves(tmp_path):
    write_nsmc_records(tmp_path, max_seq_length=32, num_examples=STEPS * HPARAMS["train_batch_size"], num_shards=2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    env.pop("TF_CONFIG", None)
    ports = json.dumps(_free_ports(2))
    me = os.path.abspath(__file__)
    jobs = {
        "single": [me, "single", str(tmp_path), str(tmp_path / "single_model"), ports, "0"],
        "w0": [me, "worker", str(tmp_path), str(tmp_path / "mw_model"), ports, "0"],
        "w1": [me, "worker", str(tmp_path), str(tmp_path / "mw_model"), ports, "1"],
    }
    procs = {k: subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, args in jobs.items()}
    out = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
            out[name] = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    single, w0, w1 = out["single"], out["w0"], out["w1"]
    assert single["replicas"] == 1 and w0["replicas"] == w1["replicas"] == 2
    np.testing.assert_allclose(w0["losses"], single["losses"], rtol=1e-4)
    np.testing.assert_allclose(w1["losses"], single["losses"], rtol=1e-4)
    assert len({round(loss[0], 6) for loss in single["losses"]}) == STEPS  # the weights changed between steps
    np.testing.assert_allclose(w0["w"], single["w"], atol=1e-5)
    np.testing.assert_allclose(w1["w"], w0["w"], atol=1e-6)
    # Checkpoints: the chief's in the model directory, the other's in a scratch dir now gone.
    assert w0["chief"] and not w1["chief"]
    assert w0["saved"] == str(tmp_path / "mw_model" / f"ckpt-{STEPS}")
    assert not w1["saved"].startswith(str(tmp_path / "mw_model")) and not os.path.exists(os.path.dirname(w1["saved"]))
    assert sorted(os.listdir(tmp_path / "mw_model")) == ["checkpoint", f"ckpt-{STEPS}.data-00000-of-00001",
                                                          f"ckpt-{STEPS}.index"]


def train_main(data_dir, model_dir, ports_json, index, extra="{}"):
    """One worker of a real `training.train` run (the path `run_pretraining.py` takes)."""
    os.environ["TF_CONFIG"] = cluster(json.loads(ports_json), int(index))
    from pretrain.training import trainer as training
    from pretrain.config import from_hparams

    strategy = multiworker.make_multiworker_strategy()
    hparams = {**HPARAMS, "num_train_steps": 4, "save_checkpoints_steps": 2, "iterations_per_loop": 2,
               "shuffle_buffer": 16, **json.loads(extra)}
    run = training.check_inputs(from_hparams(json.dumps(hparams)), f"{data_dir}/pretrain_tfrecords",
                                f"{data_dir}/vocab.txt")
    with multiworker.checkpoint_dir(model_dir, multiworker.worker_info()) as save_dir:
        result = training.train(run, save_dir, strategy=strategy)
    print(json.dumps({"step": result.step, "loss": result.metrics["loss"], "dir": save_dir}), flush=True)
    leave_together(model_dir, multiworker.worker_info())


def _train_two_workers(tmp_path, extra=({}, {})):
    write_nsmc_records(tmp_path, max_seq_length=32, num_examples=64, num_shards=2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    ports = json.dumps(_free_ports(2))
    model = tmp_path / "model"
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "train", str(tmp_path), str(model), ports,
                               str(i), json.dumps(extra[i])], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for i in (0, 1)]
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr[-3000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return model, outs


@pytest.mark.slow
def test_training_train_on_two_workers_checkpoints_on_the_chief_only(tmp_path):
    model, outs = _train_two_workers(tmp_path)
    assert outs[0]["step"] == outs[1]["step"] == 4 and outs[0]["loss"] == pytest.approx(outs[1]["loss"], rel=1e-6)
    assert outs[0]["dir"] == str(model) and not outs[1]["dir"].startswith(str(model))
    saved = sorted(p for p in os.listdir(model) if p.startswith("ckpt-"))
    assert saved == ["ckpt-2.data-00000-of-00001", "ckpt-2.index", "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    assert not os.path.exists(outs[1]["dir"])


@pytest.mark.slow
def test_a_save_by_time_is_one_decision_for_every_worker(tmp_path):
    """The chief's clock says never, worker 1's after every host call: every worker saves at the same steps
    (TensorFlow asks all workers to take part in a save), so the chief saves at step 2 too, not only at the end."""
    model, outs = _train_two_workers(tmp_path, ({"save_checkpoints_steps": 100, "save_checkpoints_secs": 1e6},
                                                {"save_checkpoints_steps": 100, "save_checkpoints_secs": 1e-3}))
    assert outs[0]["step"] == outs[1]["step"] == 4
    assert sorted(p for p in os.listdir(model) if p.endswith(".index")) == ["ckpt-2.index", "ckpt-4.index"]


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train_main(*sys.argv[2:])
    else:
        worker_main(*sys.argv[1:])
