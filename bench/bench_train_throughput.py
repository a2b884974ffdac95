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

Each side runs in float32 and in bfloat16: ours with `precision` bfloat16 (Keras mixed_bfloat16,
what `precision: auto` picks on a CPU with AVX512-BF16 or AMX), the peer under its own
`torch.autocast("cpu", bfloat16)` around forward and loss, so the comparison is with the peer
at its best. Beside them, a 1-thread 1024x1024 matmul in each dtype, the hardware fact behind it.
Prints CPU seconds per step of each arm and every ratio, and writes `bench/results/train_throughput.md`.
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
from pretrain.training.distribute import BF16_CPU_FLAGS, cpu_flags, cpu_precision  # noqa: E402
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


PRECISIONS = ("float32", "bfloat16")
ARMS = [(side, precision) for precision in PRECISIONS for side in ("ours", "peer")]


def time_ours(cfg, vocab, examples, batch: int, steps: int, repeats: int, threads: int = 1,
              precision: str = "float32") -> tuple[float, float, str]:
    """Best wall and CPU seconds per step of `Trainer`'s host loop over `steps` steps (after a warm-up)."""
    from foundation.quiet_tf import tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)

    from pretrain.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        path = fileio.join(tmp, records.shard_name(0, 1))
        records.write_shard(path, (records.encode_example(*(examples[k][i].tolist() for k in records.FEATURES))
                                   for i in range(len(examples["input_ids"]))))
        trainer = Trainer(cfg, tf.distribute.get_strategy(), vocab, precision)
        iterator = trainer.train_iterator([path], 0, [len(examples["input_ids"])])
        trainer._train_loop(iterator, tf.constant(1, tf.int64))  # trace + compile
        best = cpu = float("inf")
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            acc = trainer._train_loop(iterator, tf.constant(steps, tf.int64))[0]  # (sums, finite, ...)
            float(acc.disc_loss_sum)  # wait for the result
            best = min(best, (time.perf_counter() - start) / steps)
            cpu = min(cpu, (time.process_time() - start_cpu) / steps)
    return best, cpu, f"TensorFlow {tf.__version__}, jit_compile={cfg.jit_compile}, {threads} threads"


def time_matmul(threads: int, size: int = 1024, calls: int = 10, repeats: int = 3) -> dict[str, float]:
    """Best CPU seconds of one size x size matmul on `threads` threads, per framework and dtype, and in
    TensorFlow compiled by XLA (`jit_compile`), whose CPU bfloat16 matmul may not use the bfloat16 instructions."""
    from foundation.quiet_tf import tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    torch.set_num_threads(threads)

    def best_of(run) -> float:
        run()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(calls):
                run()
            best = min(best, (time.process_time() - start) / calls)
        return best

    out = {}
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, size, size), dtype=np.float32)
    xla = tf.function(tf.linalg.matmul, jit_compile=True)
    for name in PRECISIONS:
        x, y = tf.constant(a, getattr(tf, name)), tf.constant(b, getattr(tf, name))
        out[f"tf_{name}"] = best_of(lambda: tf.linalg.matmul(x, y).numpy())
        out[f"tf_xla_{name}"] = best_of(lambda: xla(x, y).numpy())
        tx, ty = torch.from_numpy(a).to(getattr(torch, name)), torch.from_numpy(b).to(getattr(torch, name))
        out[f"torch_{name}"] = best_of(lambda: torch.mm(tx, ty))
    return out


def time_peer(examples, vocab, batch: int, steps: int, repeats: int, n_pred: int,
              threads: int, precision: str = "float32") -> tuple[float, float, str]:
    """Best wall and CPU seconds per step of the transformers generator + discriminator, same objective;
    bfloat16 = the same step under `torch.autocast("cpu", bfloat16)`."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    peer = build_peer(len(vocab), embedding_size=128, max_position_embeddings=512,
                      discriminator=PeerDims(256, 12, 4, 1024), generator=PeerDims(64, 12, 1, 256))
    run = make_step(peer, adamw(peer, 5e-4), vocab, n_pred, autocast=precision == "bfloat16")
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
    amp = ", autocast bfloat16" if precision == "bfloat16" else ""
    return best, cpu, f"PyTorch {torch.__version__} eager{amp}, transformers {transformers.__version__}, " \
                 f"{torch.get_num_threads()} threads"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_child(args: argparse.Namespace, *extra: str) -> dict:
    """One measurement in a fresh process (TensorFlow's thread pools stay alive after a step and would
    take CPU from PyTorch in the same process); its last stdout line is JSON."""
    child = [sys.executable, __file__, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--repeats", str(args.repeats), "--threads", str(args.threads)] + (["--jit"] if args.jit else [])
    proc = subprocess.run(child + list(extra), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timed runs per side")
    parser.add_argument("--jit", action="store_true",
                        help="compile our forward/backward with XLA (slower on this CPU: 2.36 vs 1.74 CPU s/step)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate fresh processes of the four arms this many times; best of all")
    parser.add_argument("--out", default=str(RESULT))
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per side; 1 (default) is the comparison least distorted by other jobs")
    parser.add_argument("--side", choices=("ours", "peer", "matmul"), help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()

    cfg = from_hparams(dict(SMALL, train_batch_size=args.batch_size, jit_compile=args.jit,
                            iterations_per_loop=args.steps))
    if args.side == "matmul":
        print(json.dumps(time_matmul(args.threads)))
        return 0
    vocab = vocab_files.load_vocab(str(VOCAB))
    seq, batch = cfg.max_seq_length, cfg.train_batch_size
    examples = packed_examples(vocab, seq, batch * (args.steps * args.repeats + 2))
    if args.side:  # child: time one arm in this fresh process, print JSON
        if args.side == "ours":
            wall, cpu, what = time_ours(cfg, vocab, examples, batch, args.steps, args.repeats, args.threads,
                                        args.precision)
        else:
            wall, cpu, what = time_peer(examples, vocab, batch, args.steps, args.repeats, cfg.max_predictions_per_seq,
                                        args.threads, args.precision)
        print(json.dumps({"wall": wall, "cpu": cpu, "what": what}))
        return 0

    tokens = batch * seq
    flags = cpu_flags()
    print(f"ELECTRA-Small, batch {batch} x seq {seq}, {len(examples['input_ids'])} packed NSMC sequences, "
          f"N={cfg.max_predictions_per_seq} masked slots; precision auto here: {cpu_precision(flags)}", flush=True)
    best: dict[tuple[str, str], dict] = {}
    for _ in range(args.rounds):
        for side, precision in ARMS:
            m = run_child(args, "--side", side, "--precision", precision)
            print(f"{side} {precision}: {m['wall']:.3f} s/step ({m['cpu']:.3f} CPU s), "
                  f"{tokens / m['cpu']:,.0f} tokens per CPU s ({m['what']})", flush=True)
            if (side, precision) not in best or m["cpu"] < best[side, precision]["cpu"]:
                best[side, precision] = m
    mm = run_child(args, "--side", "matmul")
    print("1024x1024 matmul, CPU ms: " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in mm.items()), flush=True)
    ratios = {(o, p): best["peer", p]["cpu"] / best["ours", o]["cpu"] for o in PRECISIONS for p in PRECISIONS}
    for (o, p), r in ratios.items():
        print(f"ratio ours {o} / peer {p} (tokens per CPU second): {r:.2f}x", flush=True)

    flops = electra_train_flops_per_step(
        discriminator=cfg.discriminator_dims(), generator=cfg.generator_dims(), vocab_size=cfg.vocab_size,
        embedding_size=cfg.embedding_size, max_seq_length=seq, max_predictions_per_seq=cfg.max_predictions_per_seq,
        batch_size=batch)
    write_fragment(args.out, fragment(args, cfg, len(examples["input_ids"]), flops, flags, best, ratios, mm))
    return 0


def fragment(args, cfg, n_examples: int, flops: float, flags: frozenset[str], best: dict, ratios: dict,
             mm: dict[str, float]) -> str:
    """The Markdown of BENCHMARKS.md's training-throughput section."""
    seq, batch = cfg.max_seq_length, cfg.train_batch_size
    tokens = batch * seq
    command = "python bench/bench_train_throughput.py " + " ".join(sys.argv[1:])
    have = ", ".join(f for f in BF16_CPU_FLAGS if f in flags) or "none"
    label = {"ours": "ours (`pretrain.training.trainer.Trainer`; ", "peer": "peer ("}
    rows = "\n".join(
        f"| {label[side]}{m['what']}) | {precision} | {m['wall']:.3f} | {m['cpu']:.3f} | {tokens / m['cpu']:,.0f} | "
        f"{flops / m['cpu'] / 1e9:.1f} |"
        for (side, precision), m in sorted(best.items(), key=lambda kv: (kv[0][1] != "float32", kv[0][0])))
    ratio_rows = "\n".join(f"| ours {o} | {ratios[o, 'float32']:.2f}x | {ratios[o, 'bfloat16']:.2f}x |"
                           for o in PRECISIONS)
    gain = {side: best[side, "float32"]["cpu"] / best[side, "bfloat16"]["cpu"] for side in ("ours", "peer")}
    mm_gflops = {k: 2 * 1024 ** 3 / v / 1e9 for k, v in mm.items()}
    auto = cpu_precision(flags)  # without XLA, as this bench runs
    peer_best = min(PRECISIONS, key=lambda p: best["peer", p]["cpu"])
    headline = ratios[auto, peer_best]
    return f"""## Training throughput: ELECTRA-Small on the CPU, ours vs PyTorch `transformers`, float32 and bfloat16

Command: `nice -n 5 {command.strip()}` · machine: {os.cpu_count()} cores ({cpu_model()}); bfloat16 CPU flags
present: {have} (so `precision: auto` resolves to **{cpu_precision(flags)}** here). The machine was loaded
during the run (two long pretraining runs at higher priority): absolute times are slow and noisy, the
ratios within the run are what count.
Input: {n_examples} sequences of real NSMC text packed to {seq} tokens (KoELECTRA vocab,
{cfg.vocab_size} tokens); batch {batch}; generator hidden {cfg.generator_dims().hidden_size}, masked slots
N = {cfg.max_predictions_per_seq}; both sides: generator head on the masked positions only, Gumbel-max
sampling, loss MLM + 50 x discriminator, AdamW + clipping at 1.0, dropout 0.1. bfloat16: ours with
`precision` bfloat16 (Keras `mixed_bfloat16`: float32 variables, bfloat16 compute, attention softmax and
losses in float32); the peer under `torch.autocast("cpu", dtype=torch.bfloat16)` around forward and loss
(PyTorch's own mixed precision), so each side runs at its best. Each arm runs in its own process,
{args.rounds} round(s) alternating the four arms; each figure is the best of {args.rounds} x {args.repeats}
timing(s) of {args.steps} step(s) after a warm-up step, {args.threads} thread(s) per side.
FLOPs/step as the original counts them: {flops:.3e}.

| trainer | precision | s/step (wall) | CPU s/step | tokens per CPU s | achieved GFLOP per CPU s |
|---|---|---:|---:|---:|---:|
{rows}

**Ratios, ours / peer tokens per CPU second** (target >= 2x):

| | peer float32 | peer bfloat16 (autocast) |
|---|---:|---:|
{ratio_rows}

bfloat16 over float32 on the same side: ours {gain['ours']:.2f}x, peer {gain['peer']:.2f}x.
The hardware fact behind it, one 1024x1024 matmul on one thread (CPU ms, GFLOP/s):
TensorFlow float32 {mm['tf_float32'] * 1e3:.1f} ms ({mm_gflops['tf_float32']:.0f}), bfloat16
{mm['tf_bfloat16'] * 1e3:.1f} ms ({mm_gflops['tf_bfloat16']:.0f}): **{mm['tf_float32'] / mm['tf_bfloat16']:.2f}x**;
PyTorch float32 {mm['torch_float32'] * 1e3:.1f} ms ({mm_gflops['torch_float32']:.0f}), bfloat16
{mm['torch_bfloat16'] * 1e3:.1f} ms ({mm_gflops['torch_bfloat16']:.0f}): {mm['torch_float32'] / mm['torch_bfloat16']:.2f}x;
TensorFlow compiled by XLA (`jit_compile: true`) float32 {mm['tf_xla_float32'] * 1e3:.1f} ms, bfloat16
{mm['tf_xla_bfloat16'] * 1e3:.1f} ms: {mm['tf_xla_float32'] / mm['tf_xla_bfloat16']:.2f}x (where XLA's bfloat16 matmul is no faster, bfloat16
pays only with `jit_compile: false`, as in this step).
**Against the peer at its best** (the faster of its two precisions, {peer_best}), ours at what `auto` picks
here ({auto}) is **{headline:.2f}x**. In float32 the matrix products, nearly all of the step's work, run at
about the same rate in both frameworks (the encoder alone, next section); bfloat16 speeds them up in both
(the matmul line above), which is why the ratio against the peer in bfloat16 is the one to quote. That
bfloat16 learns like float32 is checked in "bfloat16 learns like float32" below.
With one thread per side, CPU time is the work each step does; wall time also counts the time another job
held the core. With 2 threads per side under load the peer's OpenMP threads busy-wait at barriers, which
slowed it 3-7x in our runs; one thread per side (the default) measures the per-core efficiency of the two
steps without that distortion.
"""


if __name__ == "__main__":
    raise SystemExit(main())
