"""Examples per second of the four compute settings, bfloat16/float32 x jit_compile on/off, side by side.

Each setting trains the payoff recipe (`bench/payoff.py`'s RECIPE: 4 layers, hidden 128, batch 64 of
128-token records) with `electra-pretrain` for `--steps` steps in its own process, on every core
(TensorFlow's default threads); the figure is the median examples/s the trainer logs per host call,
the first two calls (tracing, compilation, input start-up) left out. Rounds alternate the settings, so
a change in the machine's load hits all four alike. It also says what `precision: auto` and
`jit_compile: auto` pick here: the defaults should be the fastest row.

    python bench/bench_precision.py                       # records of the bundled corpus, 80 steps
    python bench/bench_precision.py --data-dir RUNS/data  # the payoff's own records (payoff.py prepare)

Writes bench/results/precision.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fragment import write_fragment  # noqa: E402  (bench/ is the script's folder)
import payoff  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(p, j) for p in ("bfloat16", "float32") for j in (False, True)]
RATE = re.compile(r"step (\d+)/\d+ .* ([0-9.]+) ex/s")
SKIP_CALLS = 2  # tracing and compilation, the input's start-up


def bundled_records(work: Path, processes: int) -> Path:
    """The payoff's prepare on the bundled corpus and sentiment rows: 128-token records, an 8,000-WordPiece vocab."""
    payoff.prepare(work, processes, ROOT / "data" / "corpus" / "nsmc_reviews_sample.txt",
                   ROOT / "data" / "nsmc_sentiment" / "train.tsv", ROOT / "data" / "nsmc_sentiment" / "test.tsv")
    return work / "data"


def rates(stderr: str) -> list[float]:
    """examples/s of each host call in a trainer log, in order."""
    return [float(m.group(2)) for m in RATE.finditer(stderr)]


def measure(data: Path, objective: str, precision: str, jit: bool, steps: int, per_call: int) -> dict:
    """One setting in a fresh `electra-pretrain` process on a scratch data dir beside `data`'s records."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("pretrain_tfrecords", "vocab.txt", "vocab_settings.json"):
            os.symlink(data / name, Path(tmp) / name)
        vocab_size = sum(1 for _ in open(data / "vocab.txt", encoding="utf-8"))
        hparams = {**payoff.RECIPE, **payoff.OBJECTIVES[objective], "vocab_size": vocab_size,
                   "precision": precision, "jit_compile": jit, "num_train_steps": steps,
                   "num_warmup_steps": steps // 4, "save_checkpoints_steps": steps, "keep_checkpoint_max": 1,
                   "iterations_per_loop": per_call, "log_every_steps": per_call}
        proc = subprocess.run([payoff.command("electra-pretrain"), "--data-dir", tmp, "--model-name", "bench",
                               "--hparams", json.dumps(hparams)], capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode:
        raise SystemExit(f"{precision} jit_compile={jit} failed:\n{proc.stderr[-3000:]}")
    measured = rates(proc.stderr)[SKIP_CALLS:]
    if not measured:
        raise SystemExit(f"--steps {steps} gives no host call past the first {SKIP_CALLS}: raise it")
    return {"precision": precision, "jit_compile": jit, "examples_per_second": statistics.median(measured),
            "calls": measured}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="records + vocab (default: built from the bundled corpus)")
    p.add_argument("--work-dir", default=None, help="where the bundled records are built (default: a temp dir)")
    p.add_argument("--objective", choices=tuple(payoff.OBJECTIVES), default="rtd")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--per-call", type=int, default=10, help="steps per host call (iterations_per_loop)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--num-processes", type=int, default=2)
    p.add_argument("--out", default="precision.md")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from pretrain.training.distribute import cpu_flags, cpu_precision

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data_dir) if args.data_dir else bundled_records(Path(args.work_dir or scratch),
                                                                        args.num_processes)
        runs: dict[tuple[str, bool], list[dict]] = {s: [] for s in SETTINGS}
        for _ in range(args.rounds):
            for precision, jit in SETTINGS:
                m = measure(data, args.objective, precision, jit, args.steps, args.per_call)
                runs[precision, jit].append(m)
                print(f"{precision:8s} jit_compile={str(jit):5s} {m['examples_per_second']:7.1f} examples/s "
                      f"(per call: {', '.join(f'{r:.0f}' for r in m['calls'])})", flush=True)
    best = {s: max(m["examples_per_second"] for m in ms) for s, ms in runs.items()}
    auto = (cpu_precision(cpu_flags(), jit_compile=False), False)  # what `auto` resolves to on this CPU
    fastest = max(best, key=best.get)
    rows = "\n".join(f"| {p} | {str(j).lower()} | {best[p, j]:.1f} |{' auto' if (p, j) == auto else ''}"
                     f"{' fastest' if (p, j) == fastest else ''} |" for p, j in SETTINGS)
    command = "python bench/bench_precision.py " + " ".join(sys.argv[1:])
    write_fragment(args.out, f"""## Compute settings on this CPU: examples/s of bfloat16/float32 x XLA

Command: `{command.strip()}` · {os.cpu_count()} cores, bfloat16 CPU flags: {', '.join(sorted(
        f for f in cpu_flags() if f in ('avx512_bf16', 'amx_bf16'))) or 'none'}. The payoff recipe
({args.objective}, batch {payoff.RECIPE['train_batch_size']} x {payoff.RECIPE['max_seq_length']} tokens)
trained by `electra-pretrain` for {args.steps} steps per setting, each in its own process on every core;
median examples/s of the host calls after the first {SKIP_CALLS}, best of {args.rounds} round(s).
`auto` (precision and jit_compile) resolves to {auto[0]} without XLA here.

| precision | jit_compile | examples/s | |
|---|---|---:|---|
{rows}
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
