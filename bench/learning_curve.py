"""Learning curve of the tiny model on the bundled NSMC corpus: loss and held-out AUC by step.

Builds records with the project's own `build_pretraining_dataset` (movies split into train
and held-out documents), trains `configs/tiny.json` with the project's trainer, and every
`--eval-every` steps evaluates the discriminator on the held-out shards. Writes
`bench/results/learning.md`.
Usage: python bench/learning_curve.py [--steps 300] [--eval-every 50] [--work-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from fragment import write_fragment  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus" / "nsmc_reviews_sample.txt"
VOCAB = ROOT / "data" / "vocab" / "koelectra_v1_vocab.txt"


def split_corpus(work: Path, heldout_fraction: float = 0.1) -> tuple[Path, Path]:
    """Whole movies (documents, blank-line separated) go to train or held-out, never both."""
    docs = CORPUS.read_bytes().split(b"\n\n")
    cut = int(len(docs) * (1 - heldout_fraction))
    paths = []
    for name, part in (("train", docs[:cut]), ("heldout", docs[cut:])):
        d = work / f"{name}_text"
        d.mkdir(parents=True, exist_ok=True)
        (d / "corpus.txt").write_bytes(b"\n\n".join(part) + b"\n")
        paths.append(d)
    return paths[0], paths[1]


def build(text_dir: Path, out_dir: Path, max_seq_length: int) -> None:
    subprocess.run([sys.executable, str(ROOT / "build_pretraining_dataset.py"), "--corpus-dir", str(text_dir),
                    "--vocab-file", str(VOCAB), "--output-dir", str(out_dir), "--max-seq-length",
                    str(max_seq_length), "--num-shards", "4", "--overwrite"], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--hparams", default="{}", help="JSON overrides of configs/tiny.json")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "learning.md"))
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="learning_"))

    from pretrain.training import trainer as training
    from pretrain.config import config_path, from_hparams

    overrides = {"num_train_steps": args.steps, "use_tpu": False, "jit_compile": True, **json.loads(args.hparams)}
    cfg = from_hparams(overrides, base=config_path("tiny"))
    train_text, heldout_text = split_corpus(work)
    build(train_text, work / "pretrain_tfrecords", cfg.max_seq_length)
    build(heldout_text, work / "heldout", cfg.max_seq_length)
    train_run = training.check_inputs(cfg, str(work / "pretrain_tfrecords"), str(VOCAB))
    heldout = training.check_inputs(cfg, str(work / "heldout"), str(VOCAB))
    trainer = training.make_trainer(train_run)
    iterator = trainer.train_iterator(train_run.files, 0, train_run.examples_per_shard)

    rows = []
    t0 = time.perf_counter()
    ev = trainer.evaluate(heldout.files)
    rows.append((0, float("nan"), float("nan"), ev))
    step = 0
    while step < args.steps:
        n = min(args.eval_every, args.steps - step)
        call = trainer.train_steps(iterator, n)
        if not call.finite:
            raise SystemExit(f"error: non-finite loss at step {step + len(call.per_step)}; the curve stops here")
        step += n
        last = call.per_step[-min(10, n):]  # mean of the last steps' training losses
        ev = trainer.evaluate(heldout.files)
        rows.append((step, float(last[:, 1].mean()), float(last[:, 2].mean()), ev))
        print(f"step {step}: train disc loss {rows[-1][2]:.4f}, held-out AUC {ev['discriminator_auc']:.4f}", flush=True)
    seconds = time.perf_counter() - t0

    n_train = train_run.manifest.num_examples if train_run.manifest else "?"
    n_held = heldout.manifest.num_examples if heldout.manifest else "?"
    lines = [
        "## Learning curve: tiny model on NSMC (CPU)",
        "",
        f"Command: `python bench/learning_curve.py --steps {args.steps} --eval-every {args.eval_every}"
        + (f" --hparams '{args.hparams}'" if args.hparams != "{}" else "") + "`  ",
        f"Input: `data/corpus/nsmc_reviews_sample.txt`, 90% of the movies -> {n_train} training examples, "
        f"10% -> {n_held} held-out examples (max_seq_length {cfg.max_seq_length}), built with "
        "`build_pretraining_dataset.py` and the KoELECTRA v1 vocab.  ",
        f"Model: `configs/tiny.json` (hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, generator "
        f"{cfg.generator_dims().hidden_size}, batch {cfg.train_batch_size}, lr {cfg.learning_rate}, "
        f"warm-up {cfg.num_warmup_steps}, XLA), seed {cfg.seed}.  ",
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), shared; {seconds:.0f} s for training and evaluations.",
        "",
        "Training losses are the mean of the last 10 steps before the evaluation; held-out columns are on "
        "all held-out examples (fixed masking noise). Chance AUC is 0.5; the label entropy at 15% replaced "
        "tokens is ~0.41.",
        "",
        "How to read it: RTD has two phases here. First the generator is near uniform, its fakes are rare "
        "tokens, and the discriminator learns to spot them (AUC rises fast). Then the generator learns the "
        "unigram distribution (generator loss from 10.4 nats to ~7.5), its fakes become frequent tokens that "
        "only context gives away, and a model this small needs far more than a few hundred steps for that, "
        "so the held-out AUC falls back towards 0.6. A wrong label or a broken mask never leaves 0.5.",
        "",
        "| step | train gen loss | train disc loss | held-out gen loss | held-out disc loss | gen accuracy | "
        "disc accuracy | precision | recall | **disc AUC** |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step, gen, disc, ev in rows:
        lines.append(f"| {step} | {gen:.3f} | {disc:.3f} | {ev['generator_loss']:.3f} | "
                     f"{ev['discriminator_loss']:.3f} | {ev['generator_accuracy']:.3f} | "
                     f"{ev['discriminator_accuracy']:.3f} | {ev['discriminator_precision']:.3f} | "
                     f"{ev['discriminator_recall']:.3f} | **{ev['discriminator_auc']:.3f}** |")
    write_fragment(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
