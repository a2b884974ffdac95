"""The `iterations_per_loop` host loop (issue 18, part 3): one host round trip per loop.

The traced loop is read as TensorFlow will run it: under a real MirroredStrategy over two
logical CPUs, the body of its While op must run nothing on the host but the input pipeline
and the call of the replica step. The figures must not depend on `iterations_per_loop`, and
a non-finite step ends the loop on the device without its update.
"""
import re

import numpy as np
import pytest

from pretrain.training.distribute import set_logical_cpu_devices

set_logical_cpu_devices(2)  # before TensorFlow creates its devices

import tensorflow as tf  # noqa: E402

from rtd_helpers import tiny_run_hparams as hp  # noqa: E402
from rtd_helpers import write_nsmc_records  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_nsmc_records(d, max_seq_length=32, num_examples=96, num_shards=3)
    return d


def make_run(data_dir, **kw):
    from pretrain.config import from_hparams
    from pretrain.training import trainer as training

    return training.check_inputs(from_hparams(hp(**kw)), str(data_dir / "pretrain_tfrecords"),
                                 str(data_dir / "vocab.txt"))


def loop_body(trainer, iterator):
    """(the While body's FunctionDef, its argument names that are replicated variables' handles)."""
    concrete = trainer._train_loop.get_concrete_function(iterator, tf.constant(3, tf.int64))
    graph = concrete.graph.as_graph_def()
    whiles = [n for n in graph.node if n.op in ("While", "StatelessWhile")]
    assert len(whiles) == 1, [n.name for n in whiles]
    body = {f.signature.name: f for f in graph.library.function}[whiles[0].attr["body"].func.name]
    variables = [*trainer.model.variables, *trainer.optimizer.variables, trainer.step]
    handles = {id(c.handle): getattr(v, "path", v.name.split(":")[0])
               for v in variables for c in (v if isinstance(v, tf.Variable) else v.value).values}
    assert len(handles) == 2 * len(variables)  # a copy per replica of each
    captured = {internal.op.name: handles[id(external)] for external, internal in concrete.graph.captures
                if id(external) in handles}
    # the While op's inputs are the body's arguments, one for one
    args = [a.name for a in body.signature.input_arg]
    replicated = {args[i]: captured[name.split(":")[0]] for i, name in enumerate(whiles[0].input)
                  if name.split(":")[0] in captured}
    return body, replicated


def host_side_work(body, replicated: dict[str, str], scope: str) -> tuple[list[str], list[str], set[str]]:
    """What the host does inside the loop body, from its ops' names.

    MirroredStrategy builds each replica's step (and its merge calls: the optimiser's update,
    the all-reduces) under the replica step's name scope; everything else in the body runs in
    cross-replica context, on the host. Returns (host ops that touch a replicated variable,
    host ops that consume a value computed by a replica, the replicated variables the replicas
    use).
    """
    def replica(name):
        return any(re.fullmatch(rf"{scope}(_\d+)?", part) for part in name.split("/"))

    nodes = {n.name: n for n in body.node_def}
    sources = {n.name: [i.split(":")[0] for i in n.input if not i.startswith("^")] for n in body.node_def}
    returned = {v.split(":")[0] for v in body.ret.values()}
    touches, consumes, used = [], [], set()
    for name, node in nodes.items():
        if replica(name):
            used.update(replicated[s] for s in sources[name] if s in replicated)
            continue
        if node.op == "Identity" and name in returned:
            continue  # a loop variable handed on to the next iteration, untouched
        touches += [f"{node.op} {name} on {replicated[s]}" for s in sources[name] if s in replicated]
        if any(s in nodes and replica(s) for s in sources[name]):
            consumes.append(f"{node.op} {name}")
    return touches, consumes, used


def test_the_loop_body_does_nothing_on_the_host_but_feed_the_replicas(data_dir):
    """No host-side read or write of a replicated variable, no cross-replica reduce, no host
    decision on a step's result inside the loop: on a TPU each would be a device->host
    transfer per step. Checked against the code before issue 18, this test lists the host's
    read and increment of the step counter, its read of the learning rate and the 11 reduced
    outputs consumed by the host (see docs/tpu_gpu.md)."""
    from pretrain.training import trainer as training

    run = make_run(data_dir)
    trainer = training.make_trainer(run, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    body, replicated = loop_body(trainer, trainer.train_iterator(run.files, 0))
    touches, consumes, used = host_side_work(body, replicated, training.REPLICA_SCOPE)
    assert touches == [], touches
    assert consumes == [], consumes
    # and the replicas do the work: they read and update every weight, and count the steps
    assert {v.path for v in trainer.model.trainable_variables} | {"global_step", "adamw/iteration"} <= used
    step_writes = [n.name for n in body.node_def if n.op == "AssignAddVariableOp"
                   and any(replicated.get(i) == "global_step" for i in n.input)]
    assert len(step_writes) == 2, step_writes  # one per replica's copy


@pytest.mark.parametrize("accumulation", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_iterations_per_loop_changes_no_figure(data_dir, accumulation):
    """6 steps with 1 and with 3 steps per host call: the same per-step summaries and the same
    checkpoint, bit for bit (also with gradient accumulation)."""
    from pretrain.training import trainer as training

    figures = {}
    for ipl in (1, 3):
        model_dir = data_dir / "models" / f"acc{accumulation}_ipl{ipl}"
        training.train(make_run(data_dir, iterations_per_loop=ipl, gradient_accumulation_steps=accumulation),
                       str(model_dir))
        events = [e for f in sorted((model_dir / "train").iterdir())
                  for e in tf.compat.v1.train.summary_iterator(str(f))]
        rows = {(v.tag, e.step): tf.make_ndarray(v.tensor).item() for e in events for v in e.summary.value
                if v.tag in training.STEP_SCALARS}
        reader = tf.train.load_checkpoint(str(model_dir / "ckpt-6"))
        figures[ipl] = rows, {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    (rows1, ckpt1), (rows3, ckpt3) = figures[1], figures[3]
    assert len(rows1) == 6 * len(training.STEP_SCALARS) and rows1 == rows3
    assert ckpt1.keys() == ckpt3.keys() and len(ckpt1) > 50
    for name in ckpt1:
        np.testing.assert_array_equal(ckpt1[name], ckpt3[name], err_msg=name)


def overflow_batches(vocab_size: int, real_tokens: list[int]) -> dict[str, np.ndarray]:
    """One batch of 8 x 32 random ids per step, with `real_tokens[i]` real tokens a row at step i."""
    ids = np.random.default_rng(0).integers(1000, vocab_size, size=(len(real_tokens) * 8, 32), dtype=np.int32)
    mask = np.zeros_like(ids)
    for i, n in enumerate(real_tokens):
        ids[i * 8:(i + 1) * 8, n:] = 0
        ids[i * 8:(i + 1) * 8, [0, n - 1]] = [2, 3]  # [CLS] ... [SEP]
        mask[i * 8:(i + 1) * 8, :n] = 1
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids)}


def test_a_non_finite_step_ends_the_loop_without_its_update(data_dir):
    """The discriminator's output bias is set so high that a batch's summed discriminator loss
    overflows float32 only when the batch has many real tokens: steps 1 and 2 (8 real tokens a
    row) are finite, step 3 (32) is not, yet its gradients are finite, so only the loop's own
    check keeps its update out."""
    from pretrain.training import trainer as training

    run = make_run(data_dir, num_warmup_steps=0, iterations_per_loop=5)
    batches = overflow_batches(run.cfg.vocab_size, [8, 8, 32, 8, 8])

    def trained(steps):
        trainer = training.make_trainer(run, tf.distribute.get_strategy())
        trainer.model.discriminator_head.dense_prediction.bias.assign([3e36])
        data = tf.data.Dataset.from_tensor_slices({k: v[:steps * 8] for k, v in batches.items()}).batch(8, drop_remainder=True)
        return trainer, trainer.train_steps(iter(data), steps)

    stopped, call = trained(5)
    assert not call.finite and int(stopped.step.numpy()) == 2  # the third step was not counted
    losses = call.per_step[:, training.STEP_SCALARS.index("loss/total")]
    assert len(losses) == 3 and np.isfinite(losses[:2]).all() and losses[2] == np.inf
    assert losses[0] > 1e37  # the bias is what makes the loss huge
    reference, ref_call = trained(2)
    assert ref_call.finite and int(reference.step.numpy()) == 2
    np.testing.assert_array_equal(ref_call.per_step, call.per_step[:2])
    for a, b in zip(stopped.model.variables, reference.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)  # step 3's update not applied
    slots = [(a, b) for a, b in zip(stopped.optimizer.variables, reference.optimizer.variables)
             if a.path.endswith(("_m", "_v"))]
    assert len(slots) == 2 * len(stopped.model.trainable_variables)
    for a, b in zip(*zip(*slots)):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_the_error_names_the_non_finite_step_and_nothing_non_finite_is_saved(data_dir):
    """A run that turns non-finite within a host call: the error line names the step whose loss the
    summaries show first non-finite, and only the checkpoint before it exists, finite."""
    from foundation.errors import UserError
    from pretrain.training import trainer as training

    model_dir = data_dir / "models" / "nan"
    training.train(make_run(data_dir, num_train_steps=3), str(model_dir))
    with pytest.raises(UserError) as stop:
        training.train(make_run(data_dir, num_train_steps=12, learning_rate=1e30, clip_norm=0.0,
                                iterations_per_loop=6, save_checkpoints_steps=6), str(model_dir))
    events = [e for f in sorted((model_dir / "train").iterdir()) for e in tf.compat.v1.train.summary_iterator(str(f))]
    losses = {e.step: tf.make_ndarray(v.tensor).item() for e in events for v in e.summary.value
              if v.tag == "loss/total" and e.step > 3}
    bad = min(s for s, loss in losses.items() if not np.isfinite(loss))
    assert bad > 4 and all(np.isfinite(losses[s]) for s in range(4, bad)) and max(losses) == bad
    assert str(stop.value) == (f"non-finite loss at step {bad}; training stopped, last good checkpoint: "
                               f"{model_dir / 'ckpt-3'}. Lower learning_rate, check the data, or use precision "
                               "float32")
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith("ckpt-")) == [
        "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    reader = tf.train.load_checkpoint(str(model_dir / "ckpt-3"))
    assert all(np.isfinite(reader.get_tensor(k)).all() for k in reader.get_variable_to_shape_map()
               if reader.get_variable_to_dtype_map()[k].is_floating)
