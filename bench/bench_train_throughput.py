"""Training throughput of our RTD step vs the same model and objective in PyTorch `transformers`.

Both sides train ELECTRA-Small (embedding 128, hidden 256, 12 layers, 4 heads, FFN 1024,
generator 1/4 = hidden 64, 1 head; KoELECTRA vocab, 32,200 tokens) at sequence length 128
on the CPU, on the same batches of real NSMC text:

- ours: `pretrain.training.trainer.Trainer` (the run's own step: masking, generator on the masked
  positions only, Gumbel sampling, discriminator, AdamW + clipping, per-step summaries),
  records read through the run's tf.data pipeline, `iterations_per_loop` steps per host call.
- peer: `ElectraForMaskedLM` (generator) + `ElectraForPreTraining` (discriminator) with
  the whole embeddings module shared (tied), the generator head applied only to the masked
  positions, Gumbel-max sampling without gradient, loss MLM + 50 x discriminator, torch
  AdamW + global-norm clipping, eager PyTorch.

Prints tokens/s of each and the ratio and writes `bench/results/train_throughput.md`.
Usage: python bench/bench_train_throughput.py [--batch-size 16] [--steps 3] [--repeats 2] [--rounds 2] [--threads N] [--jit]
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

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from foundation import fileio  # noqa: E402
from data_prep import records, vocab_files  # noqa: E402
from pretrain.config import from_hparams  # noqa: E402
from workflow.flops import electra_train_flops_per_step  # noqa: E402
from fragment import write_fragment  # noqa: E402  (bench/ is the script's folder)
from peer_rtd import PeerDims, adamw, build_peer, make_step  # noqa: E402

CORPUS = ROOT / "data" / "corpus" / "nsmc_reviews_sample.txt"
VOCAB = ROOT / "data" / "vocab" / "koelectra_v1_vocab.txt"
RESULT = ROOT / "bench" / "results" / "train_throughput.md"
SMALL = dict(model_size="small", vocab_size=32200, embedding_size=128, hidden_size=256, num_hidden_layers=12,
             num_attention_heads=4, intermediate_size=1024, generator_hidden_size=0.25, max_seq_length=128,
             learning_rate=5e-4, num_warmup_steps=0, num_train_steps=100000, precision="float32",
             shuffle_buffer=64, log_every_steps=1000)


def packed_examples(vocab: list[str], seq: int, count: int) -> dict[str, np.ndarray]:
    """`count` sequences of `seq` tokens: [CLS] review tokens ... [SEP], reviews packed greedily."""
    tok = vocab_files.make_hf_tokenizer(vocab, vocab_files.VocabSettings())
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    lines = [l for l in CORPUS.read_text(encoding="utf-8").split("\n") if l.strip()]
    ids = np.zeros((count, seq), np.int32)
    mask = np.zeros((count, seq), np.int32)
    row, buf = 0, []
    for enc in tok.encode_batch(lines, add_special_tokens=False):
        buf.extend(enc.ids)
        while len(buf) >= seq - 2 and row < count:
            body, buf = buf[:seq - 2], buf[seq - 2:]
            ids[row] = [cls, *body, sep]
            mask[row] = 1
            row += 1
        if row == count:
            break
    if row < count:  # last, shorter sequence padded: a little padding as in real data
        ids[row, :len(buf) + 2] = [cls, *buf, sep]
        mask[row, :len(buf) + 2] = 1
        row += 1
    return {"input_ids": ids[:row], "input_mask": mask[:row], "segment_ids": np.zeros_like(ids[:row])}


def time_ours(cfg, vocab, examples, batch: int, steps: int, repeats: int, threads: int) -> tuple[float, float, str]:
    """Best wall and CPU seconds per step of `Trainer`'s host loop over `steps` steps (after a warm-up)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)

    from pretrain.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        path = fileio.join(tmp, records.shard_name(0, 1))
        records.write_shard(path, (records.encode_example(*(examples[k][i].tolist() for k in records.FEATURES))
                                   for i in range(len(examples["input_ids"]))))
        trainer = Trainer(cfg, tf.distribute.get_strategy(), vocab, "float32")
        iterator = trainer.train_iterator([path], 0)
        trainer._train_loop(iterator, tf.constant(1, tf.int64))  # trace + compile
        best = cpu = float("inf")
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            acc = trainer._train_loop(iterator, tf.constant(steps, tf.int64))[0]  # (sums, finite, ...)
            float(acc.disc_loss_sum)  # wait for the result
            best = min(best, (time.perf_counter() - start) / steps)
            cpu = min(cpu, (time.process_time() - start_cpu) / steps)
    return best, cpu, f"TensorFlow {tf.__version__}, jit_compile={cfg.jit_compile}, {threads} threads"


def time_peer(examples, vocab, batch: int, steps: int, repeats: int, n_pred: int,
              threads: int) -> tuple[float, float, str]:
    """Best wall and CPU seconds per step of the transformers generator + discriminator, same objective."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    peer = build_peer(len(vocab), embedding_size=128, max_position_embeddings=512,
                      discriminator=PeerDims(256, 12, 4, 1024), generator=PeerDims(64, 12, 1, 256))
    run = make_step(peer, adamw(peer, 5e-4), vocab, n_pred)
    data = {k: torch.from_numpy(v.astype(np.int64)) for k, v in examples.items()}
    total = len(data["input_ids"])

    def step(i: int) -> float:
        rows = torch.arange(i * batch, (i + 1) * batch) % total
        return run(*(data[k][rows] for k in ("input_ids", "input_mask", "segment_ids"))).loss

    step(0)  # warm-up
    best, cpu, i = float("inf"), float("inf"), 1
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step(i)
            i += 1
        best = min(best, (time.perf_counter() - start) / steps)
        cpu = min(cpu, (time.process_time() - start_cpu) / steps)
    return best, cpu, f"PyTorch {torch.__version__} eager, transformers {transformers.__version__}, " \
                 f"{torch.get_num_threads()} threads"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timed runs per side")
    parser.add_argument("--jit", action="store_true",
                        help="compile our forward/backward with XLA (slower on this CPU: 2.36 vs 1.74 CPU s/step)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate fresh ours/peer processes this many times; best of all")
    parser.add_argument("--out", default=str(RESULT))
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per side; 1 (default) is the comparison least distorted by other jobs")
    parser.add_argument("--side", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    cfg = from_hparams(dict(SMALL, train_batch_size=args.batch_size, jit_compile=args.jit,
                            iterations_per_loop=args.steps))
    vocab = vocab_files.load_vocab(str(VOCAB))
    seq, batch = cfg.max_seq_length, cfg.train_batch_size
    examples = packed_examples(vocab, seq, batch * (args.steps * args.repeats + 2))
    if args.side:  # child: time one side in this fresh process, print JSON
        if args.side == "ours":
            wall, cpu, what = time_ours(cfg, vocab, examples, batch, args.steps, args.repeats, args.threads)
        else:
            wall, cpu, what = time_peer(examples, vocab, batch, args.steps, args.repeats, cfg.max_predictions_per_seq,
                                        args.threads)
        print(json.dumps({"wall": wall, "cpu": cpu, "what": what}))
        return 0

    tokens = batch * seq
    print(f"ELECTRA-Small, batch {batch} x seq {seq}, {len(examples['input_ids'])} packed NSMC sequences, "
          f"N={cfg.max_predictions_per_seq} masked slots", flush=True)
    # Each side in its own process: TensorFlow's (and XLA's) thread pools stay alive after a
    # step and would take CPU from PyTorch in the same process.
    best: dict[str, dict] = {}
    child = [sys.executable, __file__, "--batch-size", str(batch), "--steps", str(args.steps),
             "--repeats", str(args.repeats), "--threads", str(args.threads)] + (["--jit"] if args.jit else [])
    for _ in range(args.rounds):
        for side in ("ours", "peer"):
            proc = subprocess.run(child + ["--side", side], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{side}: {m['wall']:.3f} s/step ({m['cpu']:.3f} CPU s), {tokens / m['wall']:,.0f} tokens/s "
                  f"({m['what']})", flush=True)
            if side not in best or m["wall"] < best[side]["wall"]:
                best[side] = m
    ours_s, ours_cpu, ours_what = best["ours"]["wall"], best["ours"]["cpu"], best["ours"]["what"]
    peer_s, peer_cpu, peer_what = best["peer"]["wall"], best["peer"]["cpu"], best["peer"]["what"]
    ratio, cpu_ratio = peer_s / ours_s, peer_cpu / ours_cpu
    print(f"ratio ours/peer tokens per CPU second: {cpu_ratio:.2f}x (wall: {ratio:.2f}x)", flush=True)

    flops = electra_train_flops_per_step(
        discriminator=cfg.discriminator_dims(), generator=cfg.generator_dims(), vocab_size=cfg.vocab_size,
        embedding_size=cfg.embedding_size, max_seq_length=seq, max_predictions_per_seq=cfg.max_predictions_per_seq,
        batch_size=batch)
    command = "python bench/bench_train_throughput.py " + " ".join(sys.argv[1:])
    text = f"""## Training throughput: ELECTRA-Small on the CPU, ours vs PyTorch `transformers`

Command: `{command.strip()}` · machine: {os.cpu_count()} cores ({cpu_model()}), shared with other jobs.
Input: {len(examples['input_ids'])} sequences of real NSMC text packed to {seq} tokens (KoELECTRA vocab,
{cfg.vocab_size} tokens); batch {batch}; generator hidden {cfg.generator_dims().hidden_size}, masked slots
N = {cfg.max_predictions_per_seq}; both sides: generator head on the masked positions only, Gumbel-max
sampling, loss MLM + 50 x discriminator, AdamW + clipping at 1.0, dropout 0.1. Each side runs in its own
process, {args.rounds} alternating rounds; each figure is the best of {args.rounds} x {args.repeats} timings of
{args.steps} steps after a warm-up step. FLOPs/step as the original counts them: {flops:.3e}.

| trainer | s/step (wall) | CPU s/step | tokens/s | achieved GFLOP/s |
|---|---:|---:|---:|---:|
| ours (`pretrain.training.trainer.Trainer`; {ours_what}) | {ours_s:.3f} | {ours_cpu:.3f} | {tokens / ours_s:,.0f} | {flops / ours_s / 1e9:.1f} |
| peer ({peer_what}) | {peer_s:.3f} | {peer_cpu:.3f} | {tokens / peer_s:,.0f} | {flops / peer_s / 1e9:.1f} |

**Ratio (ours / peer tokens per CPU second): {cpu_ratio:.2f}x** (target >= 2x); by wall time {ratio:.2f}x.
2x the peer would mean {2 * flops / peer_cpu / 1e9:.0f} GFLOP/s on one core for this step (ours achieves
{flops / ours_cpu / 1e9:.0f}), while its matrix products, nearly all of its work, run at about the same
rate in both frameworks (the encoder alone, next section): in float32 on this CPU the target is out of
reach, and what is left to gain is outside the matrix products.
With one thread per side, CPU time is the work each step does; wall time also counts the time another job
held the core.
Wall time on a shared machine is noisy. With 2 threads per side under load the peer's OpenMP threads
busy-wait at barriers, which slowed it 3-7x in our runs (ratios of 2.4-3.8x); one thread per side (the
default) measures the per-core efficiency of the two steps without that distortion.
"""
    write_fragment(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
