"""The compute-to-gain curve: pretrain one recipe for a long time, score checkpoints along the way.

    python bench/payoff.py prepare                 # clean the full NSMC dump, 8k vocab, 128-token records
    python bench/payoff.py pretrain --objective rtd  # ELECTRA (replaced-token detection), in the background
    python bench/payoff.py pretrain --objective mlm  # the control: discriminator weight 0 (MLM only)
    python bench/payoff.py score                   # export the budget checkpoints, fair probe each
                                                   # -> bench/results/payoff.json, payoff.md, payoff.png

Every step calls the project's own commands (electra-clean, electra-vocab, electra-build-data,
electra-pretrain, electra-export, electra-probe). A budget is a checkpoint of one long run,
taken at the first checkpoint past the budget's wall-clock minutes (the log's timestamps), so
one run gives every budget; the learning rate there is the long run's, not a schedule that
ends at that budget (docs/payoff.md says what that means for the figures).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fragment import RESULTS, write_fragment  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ELECTRA_SHARED_DIR", ROOT.parent / "shared"))
DUMP = SHARED / "data" / "nsmc_reviews.txt.gz"
WORK = ROOT / "runs" / "payoff"
SENTIMENT_TRAIN = SHARED / "data" / "nsmc_sentiment_train.tsv"  # 40,000 rows: train rows, then dev rows
SENTIMENT_TEST = SHARED / "data" / "nsmc_sentiment_test.tsv"  # movies disjoint from the train file
BUDGETS_MINUTES = (5, 15, 45, 120)  # the first checkpoint (step 250) comes ~6 minutes in
TRAIN_ROWS = (1000, 4000)
TEST_ROWS = 4000  # one accuracy is +-0.7 points (1 s.e.); seeds vary more than that
# The fair grid less 1e-4, the worst rate for both arms in issue 14's table and in the first look
# (shared/measurements): 5 fine-tunings per arm instead of 6, on a CPU shared with the long runs.
LR_GRID = ("3e-4", "1e-3", "3e-3")

# The recipe (see docs/payoff.md for why each value): a 4-layer, 128-wide discriminator on the
# 586k-review dump, 128-token packed records, generator at half the width, Adam bias correction
# (the original's missing correction makes a short run's first updates 3x too large), bfloat16.
RECIPE = {
    "model_size": "small", "embedding_size": 128, "hidden_size": 128, "num_hidden_layers": 4,
    "num_attention_heads": 2, "intermediate_size": 512, "generator_hidden_size": 0.5,
    "max_seq_length": 128, "max_position_embeddings": 128, "train_batch_size": 64,
    "learning_rate": 1e-3, "adam_bias_correction": True, "num_warmup_steps": 500,
    "num_train_steps": 40000, "save_checkpoints_steps": 250, "keep_checkpoint_max": 0,
    "iterations_per_loop": 50, "log_every_steps": 50, "precision": "auto", "jit_compile": "auto",
}
# The control: BERT's MLM at the discriminator's size (its generator is what gets probed), no discriminator.
OBJECTIVES = {"rtd": {}, "mlm": {"disc_weight": 0.0, "generator_hidden_size": 1.0}}


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def prepare(work: Path, processes: int) -> None:
    bin_dir = Path(sys.executable).parent
    run([str(bin_dir / "electra-clean"), "--preset", "kcelectra", "--num-processes", str(processes),
         str(DUMP), str(work / "clean")])
    run([str(bin_dir / "electra-vocab"), "--vocab-size", "8000", "--merge-with", "none", "--num-unused", "0",
         str(work / "clean"), str(work / "vocab")])
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "vocab_settings.json"):
        (data / name).write_bytes((work / "vocab" / name).read_bytes())
    run([str(bin_dir / "electra-build-data"), "--corpus-dir", str(work / "clean"), "--vocab-file",
         str(data / "vocab.txt"), "--output-dir", str(data / "pretrain_tfrecords"), "--max-seq-length", "128",
         "--num-processes", str(processes)])


def pretrain(work: Path, objective: str) -> None:
    data = work / "data"
    vocab_size = sum(1 for _ in open(data / "vocab.txt", encoding="utf-8"))
    hparams = {**RECIPE, **OBJECTIVES[objective], "vocab_size": vocab_size}
    run([str(Path(sys.executable).parent / "electra-pretrain"), "--data-dir", str(data), "--model-name",
         objective, "--hparams", json.dumps(hparams)])


def checkpoint_minutes(model_dir: Path) -> dict[int, float]:
    """Wall-clock minutes from the run's start (run_config.json) to each checkpoint's index file."""
    start = (model_dir / "run_config.json").stat().st_mtime
    return {int(p.name[len("ckpt-"):-len(".index")]): (p.stat().st_mtime - start) / 60
            for p in model_dir.glob("ckpt-*.index")}


def budget_steps(minutes: dict[int, float], budgets=BUDGETS_MINUTES) -> dict[float, int]:
    """The first checkpoint at or past each budget (budgets the run has not reached are left out)."""
    out = {}
    for budget in budgets:
        reached = [step for step, m in sorted(minutes.items()) if m >= budget]
        if reached:
            out[budget] = reached[0]
    return out


def flops_per_step(work: Path, objective: str) -> float:
    sys.path.insert(0, str(ROOT))
    from pretrain import config as pconfig
    from workflow.flops import train_flops_per_step

    saved = json.loads((work / "data" / "models" / objective / "run_config.json").read_text())
    return train_flops_per_step(pconfig.from_hparams(saved["hparams"]))


def _probe(folder: Path, rows: int, out: Path, random_init: bool, run_missing: bool = True) -> dict | None:
    """electra-probe with the fair protocol; cached in `out` (a rerun scores only what is missing).

    None while another scorer holds `out`'s lock (scorers may run side by side; a killed one leaves
    its `.lock`, remove it by hand).
    """
    if not out.exists():
        if not run_missing:
            return None
        lock = out.with_suffix(".lock")
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return None
        cmd = [str(Path(sys.executable).parent / "electra-probe"), str(folder), "--fair", "--train-tsv",
               str(SENTIMENT_TRAIN), "--test-tsv", str(SENTIMENT_TEST), "--max-train-rows", str(rows),
               "--max-test-rows", str(TEST_ROWS), "--lr-grid", *LR_GRID, "--output-json", str(out) + ".tmp",
               "--random-init" if random_init else "--no-random-init"]
        try:
            run(cmd)
            os.replace(str(out) + ".tmp", out)
        finally:
            lock.unlink()
    return json.loads(out.read_text())


def _export(work: Path, objective: str, step: int) -> Path:
    out = work / "exports" / f"{objective}-{step}"
    if not out.exists():
        run([str(Path(sys.executable).parent / "electra-export"), "--model-dir",
             str(work / "data" / "models" / objective), "--output-dir", str(out), "--step", str(step)])
    # MLM only: the generator is the model (the discriminator was never run)
    return out / ("generator" if objective == "mlm" else "discriminator")


def score(work: Path, jobs: int, reverse: bool = False, run_missing: bool = True) -> list[dict]:
    scores = work / "scores"
    scores.mkdir(parents=True, exist_ok=True)
    tasks = []  # (objective, budget, step, minutes, rows)
    for objective in OBJECTIVES:
        model_dir = work / "data" / "models" / objective
        if not model_dir.exists():
            continue
        minutes = checkpoint_minutes(model_dir)
        for budget, step in budget_steps(minutes).items():
            tasks += [(objective, budget, step, minutes[step], rows) for rows in TRAIN_ROWS]
    if not tasks:
        raise SystemExit(f"no checkpoints under {work}/data/models: run `payoff.py pretrain` first")
    if reverse:  # a second scorer works from the other end
        tasks.reverse()
    if not run_missing:  # report what is scored, export nothing
        tasks = [t for t in tasks if (scores / f"{t[0]}-{t[2]}-{t[4]}.json").exists()]
    folders = {(t[0], t[2]): _export(work, t[0], t[2]) for t in tasks}  # one at a time: no two writers
    # the random-init arm is the same architecture for every checkpoint: fine-tuned once per row count
    baseline_folder = folders[tasks[0][0], tasks[0][2]]

    def one(task):
        objective, budget, step, minutes, rows = task
        return task, _probe(folders[objective, step], rows, scores / f"{objective}-{step}-{rows}.json", False,
                            run_missing)

    with ThreadPoolExecutor(jobs) as pool:
        baselines = dict(zip(TRAIN_ROWS, pool.map(
            lambda rows: _probe(baseline_folder, rows, scores / f"random-init-{rows}.json", True, run_missing),
            TRAIN_ROWS)))
        results = list(pool.map(one, tasks))
    per_step = {o: flops_per_step(work, o) for o in {t[0] for t in tasks}}
    points = []
    for (objective, budget, step, minutes, rows), r in results:
        base = baselines[rows]
        if r is None or base is None:  # still being scored elsewhere: the next run adds it
            continue
        points.append({
            "objective": objective, "budget_minutes": budget, "step": step, "minutes": round(minutes, 1),
            "flops": per_step[objective] * step, "train_rows": rows,
            "pretrained_mean": r["pretrained_accuracy"], "pretrained_std": r["pretrained_std"],
            "pretrained_lr": r["pretrained"]["learning_rate"],
            "random_init_mean": base["random_init_accuracy"], "random_init_std": base["random_init_std"],
            "random_init_lr": base["random_init"]["learning_rate"],
            "gain": r["pretrained_accuracy"] - base["random_init_accuracy"],
            "frozen_pretrained": r["frozen"]["pretrained_accuracy"],
            "frozen_random_init_mean": base["frozen"]["random_init_accuracy"],
            "frozen_random_init_std": base["frozen"]["random_init_std"],
            **{k: r["intrinsic"][k] for k in ("heldout_generator_accuracy", "unigram_baseline_accuracy",
                                             "heldout_discriminator_auc", "token_only_auc")},
        })
    return points


def report(points: list[dict]) -> str:
    rows = [f"| {p['objective']} | {p['budget_minutes']} | {p['minutes']:.0f} | {p['step']:,} | {p['flops']:.2e} | "
            f"{p['train_rows']:,} | {p['pretrained_mean']:.3f} +- {p['pretrained_std']:.3f} | "
            f"{p['random_init_mean']:.3f} +- {p['random_init_std']:.3f} | {100 * p['gain']:+.1f} | "
            f"{p['frozen_pretrained']:.3f} vs {p['frozen_random_init_mean']:.3f} | "
            f"{p['heldout_generator_accuracy']:.3f} vs {p['unigram_baseline_accuracy']:.3f} | "
            + (f"{p['heldout_discriminator_auc']:.3f} vs {p['token_only_auc']:.3f} |"
               if p["heldout_discriminator_auc"] is not None else "- |")
            for p in sorted(points, key=lambda p: (p["objective"] != "rtd", p["train_rows"], p["step"]))]
    return "\n".join([
        "## Payoff: probe gain against pretraining compute",
        "",
        "`python bench/payoff.py prepare && python bench/payoff.py pretrain --objective rtd` (and `mlm`, both at",
        "once, one thread each) `&& python bench/payoff.py score`. Recipe and reading: docs/payoff.md. Fine-tuning",
        f"protocol per point: rate chosen per arm from {'/'.join(LR_GRID)} on 1,000 dev rows cut from the train",
        f"file, 3 seeds, {TEST_ROWS:,} test rows (movies disjoint from the train file); the random-init arm is",
        "the same architecture, fine-tuned with the same protocol once per row count.",
        "",
        "| objective | budget (min) | minutes | step | FLOPs | train rows | pretrained | random init | gain (pts) "
        "| frozen probe | gen top-1 vs unigram | disc AUC vs token-only |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---|---|---|",
        *rows,
        "",
        "![payoff](bench/results/payoff.png)",
        "",
    ])


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "flops", "pretraining FLOPs"), (axes[1], "minutes", "pretraining minutes")):
        for objective in OBJECTIVES:
            for rows, marker in zip(TRAIN_ROWS, "os"):
                pts = sorted((p for p in points if p["objective"] == objective and p["train_rows"] == rows),
                             key=lambda p: p[key])
                if not pts:
                    continue
                err = [100 * (p["pretrained_std"] ** 2 + p["random_init_std"] ** 2) ** 0.5 for p in pts]
                ax.errorbar([p[key] for p in pts], [100 * p["gain"] for p in pts], yerr=err, marker=marker,
                            capsize=3, label=f"{objective}, {rows:,} rows")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("probe gain over random init (points)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("prepare", "pretrain", "score", "report"),
                   help="report: payoff.json/md/png from what is scored so far, running nothing")
    p.add_argument("--work-dir", default=str(WORK))
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default="rtd")
    p.add_argument("--num-processes", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2, help="probes at once (score)")
    p.add_argument("--reverse", action="store_true", help="score the last budgets first (a second scorer)")
    args = p.parse_args()
    work = Path(args.work_dir)
    if args.command == "prepare":
        prepare(work, args.num_processes)
    elif args.command == "pretrain":
        pretrain(work, args.objective)
    else:
        points = score(work, args.jobs, args.reverse, run_missing=args.command == "score")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "payoff.json").write_text(json.dumps(points, indent=2) + "\n")
        plot(points, RESULTS / "payoff.png")
        write_fragment("payoff.md", report(points))


if __name__ == "__main__":
    main()
