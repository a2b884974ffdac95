"""Shared by the pretraining tests: tiny configs and real NSMC records written the way the builder does."""
from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus" / "nsmc_reviews_sample.txt"
VOCAB = ROOT / "data" / "vocab" / "koelectra_v1_vocab.txt"
# The trainer tests' run: a one-layer model on 32-token records, a few CPU seconds per command.
TINY_RUN = {"model_size": "small", "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 1, "intermediate_size": 64, "generator_hidden_size": 0.5, "max_seq_length": 32,
            "max_position_embeddings": 32, "train_batch_size": 8, "eval_batch_size": 8, "num_train_steps": 6,
            "num_warmup_steps": 2, "learning_rate": 1e-3, "save_checkpoints_steps": 3, "iterations_per_loop": 3,
            "log_every_steps": 1, "shuffle_buffer": 64, "num_eval_steps": 2, "use_tpu": False,
            "precision": "float32"}


def tiny_run_hparams(**overrides) -> str:
    """`--hparams` of `TINY_RUN` with `overrides`, as a JSON string."""
    return json.dumps({**TINY_RUN, **overrides})


def tiny_config(**overrides):
    from pretrain.config import config_path, from_hparams

    return from_hparams(overrides, base=config_path("tiny"))


def nsmc_token_ids(max_lines: int, skip_lines: int = 0) -> list[list[int]]:
    """WordPiece ids (no specials) of NSMC review lines, with the pipeline's tokenizer."""
    from data_prep.vocab_files import VocabSettings, load_vocab, make_hf_tokenizer

    tok = make_hf_tokenizer(load_vocab(str(VOCAB)), VocabSettings())
    lines = [ln for ln in CORPUS.read_text(encoding="utf-8").split("\n") if ln.strip()][skip_lines:skip_lines + max_lines]
    return [e.ids[1:-1] for e in tok.encode_batch(lines)]


def write_nsmc_records(directory, *, max_seq_length: int = 64, num_examples: int = 256, num_shards: int = 2,
                       skip_lines: int = 0) -> str:
    """`directory/pretrain_tfrecords/` of packed real reviews ([CLS] A [SEP] B [SEP], padded), plus vocab.txt."""
    from data_prep import records

    ids = nsmc_token_ids(num_examples * 8, skip_lines)
    examples, cur = [], []
    budget = max_seq_length - 3
    for seq in ids:
        if len(cur) + len(seq) > budget and cur:
            half = max(1, len(cur) // 2)
            a, b = cur[:half], cur[half:]
            toks = [2] + a + [3] + b + [3] if b else [2] + a + [3]
            seg = [0] * (len(a) + 2) + [1] * (len(toks) - len(a) - 2)
            pad = max_seq_length - len(toks)
            examples.append((toks + [0] * pad, [1] * len(toks) + [0] * pad, seg + [0] * pad))
            cur = []
            if len(examples) == num_examples:
                break
        cur += seq[:budget]
    assert len(examples) == num_examples, len(examples)
    out = os.path.join(str(directory), "pretrain_tfrecords")
    os.makedirs(out, exist_ok=True)
    per = num_examples // num_shards
    counts = []
    for i in range(num_shards):
        chunk = examples[i * per:(i + 1) * per if i < num_shards - 1 else num_examples]
        counts.append(records.write_shard(os.path.join(out, records.shard_name(i, num_shards)),
                                          (records.encode_example(*e) for e in chunk)))
    vocab_path = os.path.join(str(directory), "vocab.txt")
    shutil.copy(VOCAB, vocab_path)
    records.write_manifest(out, records.Manifest(
        max_seq_length=max_seq_length, vocab_size=32200, vocab_sha256=records.file_sha256(vocab_path),
        num_shards=num_shards, examples_per_shard=tuple(counts),
        num_tokens=sum(sum(e[1]) for e in examples), seed=0, flags={"source": "tests/rtd_helpers.py"}))
    return out


def write_tf1_checkpoint(model, prefix: str, *, generator: bool = True,
                         reshape: str | None = None) -> None:
    """An original-ELECTRA-layout checkpoint of `model` (an `rtd.RtdModel`), with Adam slots, as TF1 saved them."""
    import numpy as np
    import tensorflow as tf

    from pretrain.conversion import hf_format

    values = {}
    for part in hf_format.PARTS if generator else ("discriminator",):
        weights = model.discriminator_weights() if part == "discriminator" else model.generator_weights()
        for name, variable in weights.items():
            values[hf_format.tf1_name(name, part)] = variable.numpy()
    if reshape:
        values[reshape] = np.zeros((3, 3), np.float32)
    with tf.Graph().as_default():
        for name, value in values.items():
            tf.compat.v1.get_variable(name, initializer=value)
            tf.compat.v1.get_variable(name + "/adam_m", initializer=np.full_like(value, 7.0))
            tf.compat.v1.get_variable(name + "/adam_v", initializer=np.full_like(value, 9.0))
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix, global_step=1000)


# The fault suites run entry points as their console scripts do.
def cli(capsys, main, argv) -> tuple[int, list[str], str]:
    """(exit code, the `error:` lines, all of stderr) of an entry point run as the console script runs it."""
    from foundation.errors import run_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        run_cli(lambda: main(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return done.value.code, [line for line in err.splitlines() if line.startswith("error:")], err


def pretrain(capsys, data_dir, name, hparams, *extra):
    from pretrain.training.run import main

    return cli(capsys, main, ["--data-dir", str(data_dir), "--model-name", name, "--hparams", hparams, *extra])


def export(capsys, model_dir, out, *extra):
    from pretrain.conversion.export import main

    return cli(capsys, main, ["--model-dir", str(model_dir), "--output-dir", str(out), *extra])


def files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def copy_run(trained, data_dir, name):
    """A copy of a finished run under another name, for a test that changes or damages it."""
    dst = data_dir / "models" / name
    shutil.copytree(trained, dst)
    # the `checkpoint` file holds absolute paths of the original run
    state = (dst / "checkpoint").read_text().replace(str(trained), str(dst))
    (dst / "checkpoint").write_text(state)
    return dst
