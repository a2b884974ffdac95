"""Does bfloat16 learn like float32? The demo recipe pretrained in both precisions, several seeds each.

`precision: auto` picks bfloat16 on CPUs with AVX512-BF16 or AMX; this checks it costs nothing in
what the model learns. With the project's own commands on the same records: the bundled corpus
split by movie (as `learning_curve.py`) and built with `build_pretraining_dataset.py`;
`run_pretraining.py` trains `configs/demo.json` (with `seed` and `precision` set) and evaluates
on the held-out records (`--do-eval`); `electra-export` writes Hugging Face folders;
`electra-probe --no-random-init` scores them (held-out intrinsic metrics, a frozen-feature probe,
one short fine-tune). Reports mean and standard deviation over seeds per precision and whether
the difference is within two standard errors; writes `bench/results/precision_learning.md`.
Usage: python bench/precision_learning.py [--steps 300] [--seeds 0 1 2] [--hparams JSON] [--work-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fragment import write_fragment  # noqa: E402  (bench/ is the script's folder)
from learning_curve import VOCAB, build, cpu_model, split_corpus  # noqa: E402
from pretrain.training.distribute import BF16_CPU_FLAGS, cpu_flags, cpu_precision  # noqa: E402

RESULT = ROOT / "bench" / "results" / "precision_learning.md"
PRECISIONS = ("float32", "bfloat16")
PROBE_ARGS = ["--no-random-init", "--max-train-rows", "500", "--max-test-rows", "1000", "--epochs", "1"]
# The final log line of a run: "step 300/300 (epoch 1.2): loss .. gen .. disc .. gen_acc .. disc_auc .."
STEP_LINE = re.compile(r"step (\d+)/\d+ \(epoch [^)]*\): loss (\S+) gen (\S+) disc (\S+) gen_acc (\S+) disc_auc (\S+)")
# (key, label): what the table compares, in order
METRICS = [
    ("train_loss", "training loss (last 20 steps)"),
    ("train_generator_loss", "training generator loss"),
    ("train_discriminator_loss", "training discriminator loss"),
    ("eval_generator_loss", "held-out generator loss (`--do-eval`)"),
    ("eval_generator_accuracy", "held-out generator accuracy (`--do-eval`)"),
    ("eval_discriminator_loss", "held-out discriminator loss (`--do-eval`)"),
    ("eval_discriminator_auc", "held-out discriminator AUC (`--do-eval`)"),
    ("heldout_generator_accuracy", "probe: held-out generator top-1"),
    ("heldout_discriminator_auc", "probe: discriminator AUC on its generator's replacements"),
    ("token_only_auc", "probe: its token-only baseline"),
    ("frozen_accuracy", "probe: frozen-feature linear probe accuracy"),
    ("finetune_accuracy", "probe: fine-tuned accuracy (500 rows, 1 epoch)"),
]


def run(cmd: list[str], log: Path) -> None:
    """Run a project command from the repository root; its output goes to `log`, a failure stops here."""
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")


def console(name: str) -> str:
    """A console script of the project's venv (next to this interpreter)."""
    return str(Path(sys.executable).with_name(name))


def one_run(work: Path, precision: str, seed: int, steps: int, overrides: dict) -> dict[str, float]:
    """Pretrain, evaluate, export and probe one (precision, seed); the compared figures plus CPU seconds."""
    name = f"{precision}_seed{seed}"
    model_dir, export_dir = work / "data" / "models" / name, work / "exports" / name
    hparams = {**overrides, "seed": seed, "precision": precision, "num_train_steps": steps}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run([sys.executable, "run_pretraining.py", "--data-dir", str(work / "data"), "--model-name", name,
         "--hparams", "configs/demo.json", "--hparams", json.dumps(hparams), "--do-eval",
         "--eval-data-dir", str(work / "heldout")], work / f"{name}.pretrain.log")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    last = STEP_LINE.findall((work / f"{name}.pretrain.log").read_text())[-1]
    evaluated = json.loads((model_dir / "eval_results.json").read_text())
    run([console("electra-export"), "--model-dir", str(model_dir), "--output-dir", str(export_dir), "--overwrite"],
        work / f"{name}.export.log")
    probe_json = work / f"{name}.probe.json"
    run([console("electra-probe"), str(export_dir / "discriminator"), *PROBE_ARGS, "--output-json", str(probe_json)],
        work / f"{name}.probe.log")
    probe = json.loads(probe_json.read_text())
    out = {
        "train_loss": float(last[1]), "train_generator_loss": float(last[2]), "train_discriminator_loss": float(last[3]),
        **{f"eval_{k}": evaluated[k] for k in ("generator_loss", "generator_accuracy", "discriminator_loss",
                                               "discriminator_auc")},
        **{k: probe["intrinsic"][k] for k in ("heldout_generator_accuracy", "unigram_baseline_accuracy",
                                              "heldout_discriminator_auc", "token_only_auc")},
        "frozen_accuracy": probe["frozen"]["pretrained_accuracy"],
        "finetune_accuracy": probe["pretrained_accuracy"],
        "pretrain_cpu_seconds": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
    }
    print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in out.items()), flush=True)
    return out


def compare(runs: dict[str, list[dict]], key: str) -> dict[str, float]:
    """Mean and sample std per precision, the difference bfloat16 - float32 and its standard error."""
    vals = {p: np.asarray([r[key] for r in runs[p]], dtype=float) for p in PRECISIONS}
    stats = {p: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0) for p, v in vals.items()}
    diff = stats["bfloat16"][0] - stats["float32"][0]
    se = float(np.sqrt(sum(stats[p][1] ** 2 / len(vals[p]) for p in PRECISIONS)))
    return {"f32": stats["float32"], "bf16": stats["bfloat16"], "diff": diff, "se": se}


def fragment(args, runs: dict[str, list[dict]], n_records: dict[str, int], minutes: float) -> str:
    """The Markdown section of BENCHMARKS.md."""
    flags = cpu_flags()
    rows, within = [], 0
    for key, label in METRICS:
        c = compare(runs, key)
        ok = abs(c["diff"]) <= 2 * c["se"]
        within += ok
        rows.append(f"| {label} | {c['f32'][0]:.4f} ± {c['f32'][1]:.4f} | {c['bf16'][0]:.4f} ± {c['bf16'][1]:.4f} | "
                    f"{c['diff']:+.4f} | {c['se']:.4f} | {'yes' if ok else '**no**'} |")
    cpu = compare(runs, "pretrain_cpu_seconds")
    unigram = compare(runs, "unigram_baseline_accuracy")["f32"][0]
    seeds = " ".join(str(s) for s in args.seeds)
    extra = f" --hparams '{args.hparams}'" if args.hparams != "{}" else ""
    given = args.hparams[1:-1] + ", " if args.hparams != "{}" else ""  # the overrides inside the run's JSON
    return f"""## bfloat16 learns like float32: the demo recipe in both precisions

Command: `nice -n 5 python bench/precision_learning.py --steps {args.steps} --seeds {seeds}{extra}` ·
machine: {os.cpu_count()} cores ({cpu_model()}), bfloat16 CPU flags present:
{", ".join(f for f in BF16_CPU_FLAGS if f in flags) or "none"} (`precision: auto` resolves to
**{cpu_precision(flags)}** here); loaded by two long pretraining runs at higher priority; {minutes:.0f} minutes.
Each (precision, seed) runs the project's own commands on the same records: the bundled corpus split by
movie (90% -> {n_records['train']} training examples, 10% -> {n_records['heldout']} held-out examples, built
by `build_pretraining_dataset.py`), `run_pretraining.py --hparams configs/demo.json --hparams
'{{{given}"seed": S, "precision": P, "num_train_steps": {args.steps}}}' --do-eval --eval-data-dir HELDOUT`,
`electra-export`, and `electra-probe EXPORT/discriminator {" ".join(PROBE_ARGS)}` (the probe scores the
exported float32 weights in PyTorch, so both precisions are measured the same way; its intrinsic metrics
use the NSMC test rows, held out from the corpus). The seed changes the initialisation, the data order and
the masking; the probe's own seed is fixed.

Mean ± standard deviation over the {len(args.seeds)} seeds; difference = bfloat16 - float32; its standard
error = sqrt(s_f32^2/n + s_bf16^2/n); "within noise" = |difference| <= 2 standard errors.

| metric | float32 | bfloat16 | difference | std. error | within noise |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

The generator's unigram baseline (always the most frequent tokens of the probe's train rows) is
{unigram:.4f} for every run. {within} of {len(METRICS)} metrics are within noise.
Pretraining CPU seconds per run (whole process: start-up, compilation, {args.steps} steps, held-out
evaluation): float32 {cpu['f32'][0]:.0f} ± {cpu['f32'][1]:.0f}, bfloat16 {cpu['bf16'][0]:.0f} ± {cpu['bf16'][1]:.0f}
(whether bfloat16 is faster depends on `jit_compile`: XLA's CPU matmul is no faster in bfloat16, see the
matmul line of the throughput section).
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hparams", default="{}", help="JSON overrides of configs/demo.json, e.g. '{\"jit_compile\": false}'")
    p.add_argument("--work-dir", default=None, help="default: a temporary folder, removed at the end")
    p.add_argument("--out", default=str(RESULT))
    args = p.parse_args()
    start = time.time()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="precision_learning_"))
    try:
        train_text, heldout_text = split_corpus(work)
        build(train_text, work / "data" / "pretrain_tfrecords", 64)  # configs/demo.json's max_seq_length
        build(heldout_text, work / "heldout", 64)
        shutil.copy(VOCAB, work / "data" / "vocab.txt")
        n_records = {name: json.loads(next((work / d).glob("*manifest*.json")).read_text())["num_examples"]
                     for name, d in (("train", "data/pretrain_tfrecords"), ("heldout", "heldout"))}
        runs: dict[str, list[dict]] = {p: [] for p in PRECISIONS}
        for seed in args.seeds:  # precisions alternate, so the machine's load falls on both alike
            for precision in PRECISIONS:
                runs[precision].append(one_run(work, precision, seed, args.steps, json.loads(args.hparams)))
        (work / "runs.json").write_text(json.dumps(runs, indent=2))
        write_fragment(args.out, fragment(args, runs, n_records, (time.time() - start) / 60))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
