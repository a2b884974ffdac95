"""The compute-to-gain curve: decayed budgets of one long run per objective, each fine-tuned against random init.

    python bench/payoff.py curve     # everything below, one run at a time, resumable: rerun the same command
    python bench/payoff.py prepare   # the full NSMC dump less every probe test and dev review, 8k vocab, 128-token records
    python bench/payoff.py report    # payoff.json/md/png from what is scored so far, running nothing

`curve` trains each objective (ELECTRA's replaced-token detection, and the MLM-only control) as one
long warmup-stable-decay run (`lr_schedule: wsd`) to the largest budget, whose own decay ends it. Each
smaller budget is a branch (`electra-pretrain --init-from`): the long run's checkpoint at ~85% of the
budget's steps, annealed to 0 at the budget (docs/pretraining.md, "Decay branches"). Budgets go in
increasing order, both objectives at each, and every point is exported, probed and written to
bench/results/ as soon as its run ends. The run folder is `$ELECTRA_PAYOFF_DIR` (default `payoff_runs`
beside the checkout), outside the checkout so a later start on this machine finds it; every step
skips or resumes what is there (training from its checkpoints, exports and probes by their files).
Every step calls the project's own commands (electra-clean, electra-vocab, electra-build-data,
electra-pretrain, electra-export, electra-probe).
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from fragment import RESULTS, write_fragment  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("ELECTRA_SHARED_DIR", ROOT.parent / "shared"))
DUMP = SHARED / "data" / "nsmc_reviews.txt.gz"
RUNS = Path(os.environ.get("ELECTRA_PAYOFF_DIR", ROOT.parent / "payoff_runs"))
SENTIMENT_TRAIN = SHARED / "data" / "nsmc_sentiment_train.tsv"  # 40,000 rows: train rows, then dev rows
SENTIMENT_TEST = SHARED / "data" / "nsmc_sentiment_test.tsv"  # movies disjoint from the train file
BUDGETS_FLOPS = (1e14, 3e14, 1e15, 2e15)  # the last is the long run's own end
DECAY_FRACTION = 0.15  # a budget's last 15% of steps anneal to 0
TRAIN_ROWS = (1000, 4000)
DEV_ROWS = 1000  # right after the train rows in the train file: choose protocol and rate
TEST_ROWS = 4000  # one accuracy is +-0.7 points (1 s.e.); seeds vary more than that
LR_GRID = ("3e-4", "1e-3", "3e-3")  # issue 14's table: 1e-4 was the worst rate for both arms
PROTOCOLS = ("plain", "llrd", "lpft", "reinit")
SEEDS = 5

# The recipe (see docs/payoff.md for why each value): a 4-layer, 128-wide discriminator on the
# 586k-review dump, 128-token packed records, generator at half the width, Adam bias correction
# (the original's missing correction makes a short run's first updates 3x too large), and the
# machine's fastest compute (`auto`: bfloat16 without XLA on a CPU with AVX512-BF16).
RECIPE = {
    "model_size": "small", "embedding_size": 128, "hidden_size": 128, "num_hidden_layers": 4,
    "num_attention_heads": 2, "intermediate_size": 512, "generator_hidden_size": 0.5,
    "max_seq_length": 128, "max_position_embeddings": 128, "train_batch_size": 64,
    "learning_rate": 1e-3, "adam_bias_correction": True, "num_warmup_steps": 500, "lr_schedule": "wsd",
    "save_checkpoints_steps": 250, "keep_checkpoint_max": 5,
    "iterations_per_loop": 50, "log_every_steps": 50, "precision": "auto", "jit_compile": "auto",
}
# The control: BERT's MLM at the discriminator's size (its generator is what gets probed), no discriminator.
OBJECTIVES = {"mlm": {"disc_weight": 0.0, "generator_hidden_size": 1.0}, "rtd": {}}


class Variant(NamedTuple):
    """An ELECTRA variant measured at the largest budget only, after the curve: a run of its own from the weights
    of `start_from`'s decayed run at the second-largest budget (`--init-discriminator-from-generator`), for the
    rest of the largest budget's FLOPs, so its point counts both stages' compute."""

    hparams: dict  # over RECIPE
    start_from: str  # an objective whose generator is the discriminator's size
    note: str  # what it is, for the report


# Chosen after the first budgets: the MLM control paid off at 3e14 while RTD stayed below random init with its
# half-width generator still on the unigram plateau.
VARIANTS = {"rtd-from-mlm": Variant(
    {"generator_hidden_size": 1.0}, "mlm",
    "two-stage ELECTRA (the paper's section 3.2): RTD with a generator as wide as the discriminator, both "
    "started from the MLM control's decayed run at the second-largest budget and then trained jointly (the paper "
    "froze the generator); its FLOPs count both stages")}


class Budget(NamedTuple):
    """One point of the curve: a run that branches from the long run at `branch_step` and ends at `end_step`."""

    flops: float  # the budget asked for
    branch_step: int  # the long run's checkpoint it starts from
    end_step: int  # where its learning rate reaches 0: its compute is end_step x FLOPs per step


def plan(flops_per_step: float, budgets=BUDGETS_FLOPS, decay_fraction: float = DECAY_FRACTION,
         warmup: int = 0) -> list[Budget]:
    """The budgets' steps: each ends at ceil(budget / FLOPs per step) and branches at (1 - decay_fraction) of
    that (the long run stops and saves there: `--stop-at-step`), never inside the warm-up."""
    out = []
    for flops in budgets:
        end = math.ceil(flops / flops_per_step)
        branch = int(end * (1 - decay_fraction))
        if branch < max(warmup, 1) or branch >= end:
            raise SystemExit(f"budget {flops:.0e} is {end} steps: too few to branch after the {warmup} warm-up "
                             "steps; drop it or lower num_warmup_steps")
        out.append(Budget(flops, branch, end))
    return out


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def command(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# --- the corpus: the dump less every review that scores a model ---------------------------------
def heldout_rows(train_tsv: Path, test_tsv: Path, train_rows=TRAIN_ROWS, dev_rows: int = DEV_ROWS):
    """The test file's rows (all of them) and the dev rows of every train-row count."""
    from workflow.labelled_rows import Split, read_split

    test = read_split(str(test_tsv))
    train = read_split(str(train_tsv), max(train_rows) + dev_rows)
    devs = [Split(train.texts[r:r + dev_rows], train.labels[r:r + dev_rows]) for r in train_rows]
    return [test, *devs]


def clean_corpus(dump: Path, out: Path, splits) -> dict:
    """`dump` without the held-out reviews (normalised comparison) -> `out` (gz) and `out`.json with the counts.

    Skipped when `out` exists (written under a temporary name, then renamed), so a rerun's later stages
    see the same file and skip too.
    """
    from workflow.labelled_rows import HeldoutFilter, heldout_keys

    record = out.with_suffix(".json")
    if out.exists() and record.exists():
        return json.loads(record.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    drop = HeldoutFilter(heldout_keys(splits))
    tmp = out.with_name(out.name + ".tmp")
    opener = gzip.open if dump.suffix == ".gz" else open
    # newline="\n": a review holding a bare \r stays one line, as the cleaner reads it
    with opener(dump, "rt", encoding="utf-8", newline="\n") as src, \
            gzip.open(tmp, "wt", encoding="utf-8", newline="") as dst:
        for line in drop(line.rstrip("\n") for line in src):
            dst.write(line + "\n")
    counts = {"source": str(dump), **drop.result()._asdict()}
    record.write_text(json.dumps(counts, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"held-out reviews: {counts['dropped']:,} of {counts['lines']:,} corpus lines removed "
          f"({counts['heldout_found']:,} of {counts['heldout_texts']:,} distinct test/dev texts occurred)", flush=True)
    return counts


def prepare(work: Path, processes: int, dump: Path = DUMP, train_tsv: Path = SENTIMENT_TRAIN,
            test_tsv: Path = SENTIMENT_TEST, train_rows=TRAIN_ROWS, vocab_size: int = 8000,
            max_seq_length: int = RECIPE["max_seq_length"]) -> dict:
    """Clean corpus -> electra-clean -> electra-vocab -> electra-build-data; each skips when finished."""
    corpus = work / "corpus" / "nsmc_reviews.heldout_removed.txt.gz"
    counts = clean_corpus(dump, corpus, heldout_rows(train_tsv, test_tsv, train_rows))
    run([command("electra-clean"), "--preset", "kcelectra", "--num-processes", str(processes),
         str(corpus), str(work / "clean")])
    run([command("electra-vocab"), "--vocab-size", str(vocab_size), "--merge-with", "none", "--num-unused", "0",
         str(work / "clean"), str(work / "vocab")])
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "vocab_settings.json"):
        (data / name).write_bytes((work / "vocab" / name).read_bytes())
    run([command("electra-build-data"), "--corpus-dir", str(work / "clean"), "--vocab-file",
         str(data / "vocab.txt"), "--output-dir", str(data / "pretrain_tfrecords"), "--max-seq-length",
         str(max_seq_length), "--num-processes", str(processes)])
    return counts


# --- pretraining ------------------------------------------------------------------------------------
def objective_hparams(work: Path, objective: str, overrides: dict) -> dict:
    vocab_size = sum(1 for _ in open(work / "data" / "vocab.txt", encoding="utf-8"))
    own = VARIANTS[objective].hparams if objective in VARIANTS else OBJECTIVES[objective]
    return {**RECIPE, **own, **overrides, "vocab_size": vocab_size}


def flops_per_step(hparams: dict) -> float:
    from pretrain import config as pconfig
    from workflow.flops import train_flops_per_step

    return train_flops_per_step(pconfig.from_hparams(hparams))


def budget_hparams(objective: str, hparams: dict, budgets: list[Budget], index: int) -> tuple[str, dict, list[str]]:
    """(model name, hparams, extra flags) of budget `index`: the long run itself (named `objective`) for the
    last budget, else a branch from the long run's checkpoint at its `branch_step`."""
    last = budgets[-1]
    long_run = {**hparams, "num_train_steps": last.end_step, "decay_steps": last.end_step - last.branch_step}
    if index == len(budgets) - 1:
        return objective, long_run, []
    b = budgets[index]
    name = branch_name(objective, b.flops)
    return name, {**long_run, "num_train_steps": b.end_step, "decay_steps": b.end_step - b.branch_step}, [
        "--init-from", f"{{models}}/{objective}/ckpt-{b.branch_step}"]


def branch_name(objective: str, flops: float) -> str:
    """The model name of `objective`'s decayed run at the budget `flops`, e.g. mlm-decay-1e15."""
    return f"{objective}-decay-{flops:.0e}".replace("+", "")


def variant_plan(variant: str, hparams: dict, per_step: float, start: Budget, start_flops: float, largest: float
                 ) -> tuple[Budget, float, dict, list[str]]:
    """The variant's (budget, FLOPs, hparams, extra flags): its own warmup-stable-decay run from `start` (the
    first stage's decayed run, `start_flops` spent) to the `largest` budget's FLOPs in all."""
    steps = math.ceil((largest - start_flops) / per_step)
    if steps <= 2 * hparams["num_warmup_steps"]:
        raise SystemExit(f"variant {variant}: {steps} steps after its first stage's {start_flops:.1e} FLOPs, too few "
                         f"for {hparams['num_warmup_steps']} warm-up steps")
    decay = max(1, round(steps * DECAY_FRACTION))
    stage_one = branch_name(VARIANTS[variant].start_from, start.flops)
    return (Budget(largest, 0, steps), start_flops + steps * per_step,
            {**hparams, "num_train_steps": steps, "decay_steps": decay},
            ["--init-checkpoint", f"{{models}}/{stage_one}/ckpt-{start.end_step}", "--init-discriminator-from-generator"])


def pretrain(work: Path, name: str, hparams: dict, extra: list[str] = ()) -> None:
    """electra-pretrain (resumes by itself from the model dir's checkpoints; a finished run returns at once)."""
    models = str(work / "data" / "models")
    run([command("electra-pretrain"), "--data-dir", str(work / "data"), "--model-name", name, "--hparams",
         json.dumps(hparams), *[e.replace("{models}", models) for e in extra]])


# --- scoring ----------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def probe(folder: Path, rows: int, out: Path, random_init: bool, settings: dict, run_missing: bool = True):
    """electra-probe with the protocol; cached in `out` (a rerun scores only what is missing).

    None while another live scorer holds `out`'s lock (the lock names its process; a dead one's is taken over).
    """
    if out.exists() or not run_missing:
        return json.loads(out.read_text()) if out.exists() else None
    lock = out.with_suffix(".lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        text = lock.read_text().strip()
        if text.isdigit() and _alive(int(text)):
            return None
        lock.unlink()  # its scorer died: take over
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    cmd = [command("electra-probe"), str(folder), "--train-tsv", str(settings["train_tsv"]), "--test-tsv",
           str(settings["test_tsv"]), "--max-train-rows", str(rows), "--dev-rows", str(settings["dev_rows"]),
           "--max-test-rows", str(settings["test_rows"]), "--lr-grid", *settings["lr_grid"], "--seeds",
           str(settings["seeds"]), "--protocols", *settings["protocols"], "--jobs", str(settings["jobs"]),
           "--output-json", str(out) + ".tmp",
           "--random-init" if random_init else "--no-random-init"]
    try:
        run(cmd)
        os.replace(str(out) + ".tmp", out)
    finally:
        lock.unlink()
    return json.loads(out.read_text())


def atomic_json(path: Path, value: dict) -> None:
    from foundation import fileio

    fileio.write_text(str(path), json.dumps(value, indent=2) + "\n")


def export(work: Path, name: str, objective: str, step: int) -> Path:
    out = work / "exports" / f"{name}-{step}"
    if not out.exists():
        run([command("electra-export"), "--model-dir", str(work / "data" / "models" / name), "--output-dir",
             str(out), "--step", str(step)])
    # MLM only: the generator is the model (the discriminator was never run)
    return out / ("generator" if objective == "mlm" else "discriminator")


def score_point(work: Path, objective: str, name: str, budget: Budget, flops: float, settings: dict,
                run_missing: bool = True) -> list[dict]:
    """The point's rows (one per train-row count; `flops`: its compute), probing what is missing; [] while any
    part is elsewhere."""
    if not run_missing and not (work / "exports" / f"{name}-{budget.end_step}").exists():
        return []
    folder = export(work, name, objective, budget.end_step)
    scores = work / "scores"
    scores.mkdir(parents=True, exist_ok=True)

    def both(rows):  # the random-init arm is the same architecture at every point: fine-tuned once per row count
        base, point = scores / f"random-init-{rows}.json", scores / f"{name}-{budget.end_step}-{rows}.json"
        if run_missing and not base.exists():  # the first point scores both arms in one probe
            first = probe(folder, rows, point, True, settings)
            if first is not None and first.get("random_init_accuracy") is not None:
                atomic_json(base, first)
        return (probe(folder, rows, base, True, settings, run_missing),
                probe(folder, rows, point, False, settings, run_missing))

    results = [both(rows) for rows in settings["train_rows"]]  # one probe at a time, its fine-tunes in parallel
    points = []
    for rows, (base, r) in zip(settings["train_rows"], results):
        if r is None or base is None:
            continue
        points.append({
            "objective": objective, "budget_flops": budget.flops, "branch_step": budget.branch_step,
            "step": budget.end_step, "flops": flops, "train_rows": rows,
            "pretrained_mean": r["pretrained_accuracy"], "pretrained_std": r["pretrained_std"],
            "pretrained_lr": r["pretrained"]["learning_rate"],
            "pretrained_protocol": r["pretrained"].get("protocol", "plain"),
            "seeds": len(r["pretrained"]["accuracies"]),
            "random_init_mean": base["random_init_accuracy"], "random_init_std": base["random_init_std"],
            "random_init_lr": base["random_init"]["learning_rate"],
            "random_init_protocol": base["random_init"].get("protocol", "plain"),
            "gain": r["pretrained_accuracy"] - base["random_init_accuracy"],
            "frozen_pretrained": r["frozen"]["pretrained_accuracy"],
            "frozen_random_init_mean": base["frozen"]["random_init_accuracy"],
            "frozen_random_init_std": base["frozen"]["random_init_std"],
            **{k: r["intrinsic"][k] for k in ("heldout_generator_accuracy", "unigram_baseline_accuracy",
                                             "heldout_discriminator_auc", "token_only_auc")},
        })
    return points


# --- the curve --------------------------------------------------------------------------------------
def walk(work: Path, args, train: bool) -> list[dict]:
    """Every (budget, objective) in order, then each variant at the largest budget: train it (if `train`),
    score it, record the points so far."""
    overrides = json.loads(args.hparams)
    settings = probe_settings(args)
    points = []
    for index in range(len(args.budgets)):
        for objective in args.objectives:
            hparams = objective_hparams(work, objective, overrides)
            per_step = flops_per_step(hparams)
            budgets = plan(per_step, args.budgets, DECAY_FRACTION, hparams["num_warmup_steps"])
            name, run_hparams, extra = budget_hparams(objective, hparams, budgets, index)
            if train:
                if extra:  # the long run up to the branch's checkpoint first (its schedule unchanged)
                    _, long_hparams, _ = budget_hparams(objective, hparams, budgets, len(budgets) - 1)
                    pretrain(work, objective, long_hparams, ["--stop-at-step", str(budgets[index].branch_step)])
                pretrain(work, name, run_hparams, extra)
            points += score_point(work, objective, name, budgets[index], per_step * budgets[index].end_step,
                                  settings, run_missing=train)
            if train:
                record(work, points, settings)
    for variant in args.variants:
        if len(args.budgets) < 2 or VARIANTS[variant].start_from not in args.objectives:
            raise SystemExit(f"variant {variant} starts from {VARIANTS[variant].start_from}'s second-largest "
                             "budget: give two budgets or more and that objective, or --variants with no name")
        first = objective_hparams(work, VARIANTS[variant].start_from, overrides)
        first_per_step = flops_per_step(first)
        start = plan(first_per_step, args.budgets, DECAY_FRACTION, first["num_warmup_steps"])[-2]
        hparams = objective_hparams(work, variant, overrides)
        budget, flops, run_hparams, extra = variant_plan(variant, hparams, flops_per_step(hparams), start,
                                                         first_per_step * start.end_step, args.budgets[-1])
        if train:
            pretrain(work, variant, run_hparams, extra)
        points += score_point(work, variant, variant, budget, flops, settings, run_missing=train)
        if train:
            record(work, points, settings)
    return points


def probe_settings(args) -> dict:
    return {"train_tsv": args.train_tsv, "test_tsv": args.test_tsv, "train_rows": tuple(args.train_rows),
            "dev_rows": args.dev_rows, "test_rows": args.test_rows, "lr_grid": tuple(args.lr_grid),
            "seeds": args.seeds, "protocols": tuple(args.protocols), "jobs": args.jobs,
            "results_dir": args.results_dir}


def record(work: Path, points: list[dict], settings: dict) -> None:
    """bench/results/payoff.{json,md,png} (or `--results-dir`) from the points so far."""
    exclusion = work / "corpus" / "nsmc_reviews.heldout_removed.txt.json"
    excluded = json.loads(exclusion.read_text()) if exclusion.exists() else None
    results = Path(settings["results_dir"])
    results.mkdir(parents=True, exist_ok=True)
    atomic_json(results / "payoff.json", {"corpus_exclusion": excluded, "points": points})
    plot(points, results / "payoff.png")
    write_fragment(results / "payoff.md", report(points, settings, excluded))


CLEAR = 0.02  # a clear gain: at least 2 points beyond two standard deviations (the bar)
EXTRAPOLATE_DECADES = 2  # a straight line read further than 100x past its last point says nothing


def margin(p: dict) -> float:
    """The gain less two standard deviations of a pretrained-minus-random difference (seed to seed): a point
    clears the bar when this is >= CLEAR."""
    return p["gain"] - 2 * math.hypot(p["pretrained_std"], p["random_init_std"])


def gain_and_margin(p: dict) -> str:
    return f"{100 * p['gain']:+.1f} points, margin {100 * margin(p):+.1f}"


def trends(points: list[dict]) -> list[str]:
    """Per (objective, train rows): the first budget that clears the bar, else the least-squares line of the
    margin against log10 FLOPs (two budgets or more) and the FLOPs where it would reach CLEAR. A variant's one
    point is set beside the curve's objectives at its budget instead."""
    lines = []
    for objective, rows in sorted({(p["objective"], p["train_rows"]) for p in points}):
        pts = sorted((p for p in points if (p["objective"], p["train_rows"]) == (objective, rows)),
                     key=lambda p: p["flops"])
        head = f"- {objective}, {rows:,} train rows: "
        if objective in VARIANTS:
            point = pts[-1]
            peers = sorted((p for p in points if p["objective"] in OBJECTIVES and p["train_rows"] == rows
                            and p["budget_flops"] == point["budget_flops"]), key=lambda p: p["objective"])
            lines.append(head + ("clear gain" if margin(point) >= CLEAR else "no clear gain")
                         + f" at {point['flops']:.1e} FLOPs ({gain_and_margin(point)}); at the same budget "
                         + (", ".join(f"{p['objective']} {gain_and_margin(p)}" for p in peers) or "nothing else scored"))
            continue
        clear = [p for p in pts if margin(p) >= CLEAR]
        if clear:
            lines.append(head + f"first clear gain at {clear[0]['flops']:.1e} FLOPs ({gain_and_margin(clear[0])})")
            continue
        if len(pts) < 2:
            lines.append(head + f"no clear gain at {pts[0]['flops']:.1e} FLOPs (margin {100 * margin(pts[0]):+.1f}); "
                                "one budget: no trend yet")
            continue
        x = [math.log10(p["flops"]) for p in pts]
        y = [margin(p) for p in pts]
        mx, my = sum(x) / len(x), sum(y) / len(y)
        slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
        reach = mx + (CLEAR - my) / slope if slope > 0 else None  # log10 FLOPs where the line meets the bar
        if reach is None:
            where = "it does not rise"
        elif reach <= x[-1] + EXTRAPOLATE_DECADES:
            where = f"it would reach +{100 * CLEAR:.0f} at ~{10 ** reach:.0e} FLOPs"
        else:
            where = f"it would not reach +{100 * CLEAR:.0f} within {10 ** EXTRAPOLATE_DECADES:,}x the largest budget"
        lines.append(head + f"no clear gain up to {pts[-1]['flops']:.1e} FLOPs; the margin moves "
                            f"{100 * slope:+.1f} points per tenfold compute over {len(pts)} budgets: {where} "
                            "(a straight-line extrapolation)")
    return lines


def report(points: list[dict], settings: dict, excluded: dict | None) -> str:
    rows = [f"| {p['objective']} | {p['budget_flops']:.0e} | {p['branch_step']:,} -> {p['step']:,} | {p['flops']:.2e} | "
            f"{p['train_rows']:,} | {p['pretrained_mean']:.3f} +- {p['pretrained_std']:.3f} "
            f"({p['pretrained_protocol']}, {p['pretrained_lr']:g}) | "
            f"{p['random_init_mean']:.3f} +- {p['random_init_std']:.3f} "
            f"({p['random_init_protocol']}, {p['random_init_lr']:g}) | {100 * p['gain']:+.1f} | "
            f"{100 * margin(p):+.1f} | "
            f"{p['frozen_pretrained']:.3f} vs {p['frozen_random_init_mean']:.3f} | "
            f"{p['heldout_generator_accuracy']:.3f} vs {p['unigram_baseline_accuracy']:.3f} | "
            + (f"{p['heldout_discriminator_auc']:.3f} vs {p['token_only_auc']:.3f} |"
               if p["heldout_discriminator_auc"] is not None else "- |")
            for p in sorted(points, key=lambda p: (p["objective"] != "rtd", p["train_rows"], p["step"]))]
    corpus = (f"The pretraining text is the NSMC dump less every review of the probe's test file and dev rows "
              f"(normalised comparison): {excluded['dropped']:,} of {excluded['lines']:,} lines removed."
              if excluded else "")
    return "\n".join([
        "## Payoff: probe gain against pretraining compute",
        "",
        "`python bench/payoff.py curve` (one run at a time, resumable). Recipe and reading: docs/payoff.md. Each",
        "budget is a run annealed to 0 (warmup-stable-decay), branched from one long run per objective. Fine-tuning",
        f"per point: protocol ({'/'.join(settings['protocols'])}) and rate ({'/'.join(settings['lr_grid'])}) chosen per",
        f"arm on {settings['dev_rows']:,} dev rows cut from the train file, {settings['seeds']} seeds at the choice,",
        f"{settings['test_rows']:,} test rows (movies disjoint from the train file); the random-init arm is the same",
        "architecture, fine-tuned with the same protocol once per row count. " + corpus,
        "",
        "| objective | budget | steps (branch -> end) | FLOPs | train rows | pretrained (protocol, lr) "
        "| random init (protocol, lr) | gain (pts) | margin (pts) | frozen probe | gen top-1 vs unigram "
        "| disc AUC vs token-only |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---|---|---|",
        *rows,
        "",
        f"Margin: the gain less two standard deviations of a pretrained-minus-random difference, "
        f"2 x sqrt(s_pretrained^2 + s_random^2); a clear gain is a margin of at least +{100 * CLEAR:.0f} points.",
        "",
        *trends(points),
        *[f"- {v}: {VARIANTS[v].note}" for v in sorted({p["objective"] for p in points} & set(VARIANTS))],
        "",
        "![payoff](bench/results/payoff.png)",
        "",
    ])


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for objective in sorted({p["objective"] for p in points}):
        for rows, marker in zip(sorted({p["train_rows"] for p in points}), "os^v"):
            pts = sorted((p for p in points if p["objective"] == objective and p["train_rows"] == rows),
                         key=lambda p: p["flops"])
            if not pts:
                continue
            err = [100 * (p["pretrained_std"] ** 2 + p["random_init_std"] ** 2) ** 0.5 for p in pts]
            ax.errorbar([p["flops"] for p in pts], [100 * p["gain"] for p in pts], yerr=err, marker=marker,
                        capsize=3, label=f"{objective}, {rows:,} rows")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("pretraining FLOPs (decayed budgets)")
    ax.set_ylabel("probe gain over random init (points)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("prepare", "curve", "report"))
    p.add_argument("--work-dir", default=str(RUNS), help="the run folder (default $ELECTRA_PAYOFF_DIR or "
                                                          "payoff_runs beside the checkout)")
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS_FLOPS), help="FLOPs, increasing")
    p.add_argument("--objectives", nargs="+", choices=tuple(OBJECTIVES), default=list(OBJECTIVES))
    p.add_argument("--variants", nargs="*", choices=tuple(VARIANTS), default=list(VARIANTS),
                   help="ELECTRA variants run to the largest budget only, after the curve (none: --variants)")
    p.add_argument("--hparams", default="{}", help="JSON overrides of RECIPE (a toy run: smaller sizes)")
    p.add_argument("--corpus", default=str(DUMP), help="the raw text (one review a line, a blank line between movies)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--train-tsv", default=str(SENTIMENT_TRAIN))
    p.add_argument("--test-tsv", default=str(SENTIMENT_TEST))
    p.add_argument("--train-rows", type=int, nargs="+", default=list(TRAIN_ROWS))
    p.add_argument("--dev-rows", type=int, default=DEV_ROWS)
    p.add_argument("--test-rows", type=int, default=TEST_ROWS)
    p.add_argument("--lr-grid", nargs="+", default=list(LR_GRID))
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS))
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--num-processes", type=int, default=2)
    p.add_argument("--results-dir", default=str(RESULTS), help="where payoff.json/md/png go (a toy run: elsewhere)")
    p.add_argument("--jobs", type=int, default=os.cpu_count(),
                   help="fine-tunes at once inside each probe (probes run after a run, one at a time, never beside "
                        "training)")
    args = p.parse_args()
    if args.budgets != sorted(args.budgets):
        raise SystemExit("--budgets must be increasing")
    work = Path(args.work_dir)
    if args.command in ("prepare", "curve"):
        prepare(work, args.num_processes, Path(args.corpus), Path(args.train_tsv), Path(args.test_tsv),
                tuple(args.train_rows), args.vocab_size,
                json.loads(args.hparams).get("max_seq_length", RECIPE["max_seq_length"]))
    if args.command == "curve":
        walk(work, args, train=True)
    elif args.command == "report":
        record(work, walk(work, args, train=False), probe_settings(args))


if __name__ == "__main__":
    main()
