"""`electra-demo`: the whole pipeline in one command, from raw text to a scored Hugging Face model.

    electra-demo --out-dir runs/demo                                  # bundled NSMC corpus, CPU, ~10 min
    electra-demo --corpus my_texts/ --preset small --out-dir runs/my  # a real run (TPU/GPU preset)

Stages, each calling the stage's own Python function: clean -> vocab -> records ->
pretrain -> export -> probe -> curves. Every finished stage leaves a marker
(`OUT/stages/NAME.json`: what it was run with, and its figures); a rerun skips a stage whose
marker matches the current settings and whose output is there, so an interrupted run picks
up where it stopped (records and training resume inside their stage). A stage whose settings
changed, or whose input was redone, is redone with everything after it; `--force` redoes all.
The figures of every stage end up in `OUT/summary.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, NamedTuple, Sequence

import electra_data
from foundation import console, fileio, lease
from foundation.errors import UserError, run_cli
from workflow.probe import ProbeConfig
from workflow.stages import Stage, run_stages

DEFAULT_CORPUS = electra_data.CORPUS_SAMPLE
SENTIMENT_DIR = electra_data.SENTIMENT_DIR
PRESETS = ("demo", "tiny", "small", "base", "large")  # configs/<name>.json
MODEL_NAME = "electra"
SUMMARY = "summary.json"
# What the payoff curve measured (docs/payoff.md, bench/results/payoff.json), for the demo's last line.
PAYOFF = ("docs/payoff.md measures where pretraining pays off on a 2-core CPU (a run annealed at each budget, a "
          "corpus without the scored reviews): the MLM control first beats random init fine-tuned clearly at 1e15 "
          "FLOPs (+5.1 points at 4,000 rows, 2 points beyond two standard deviations) and levels off there "
          "(+5.2 at 2e15); ELECTRA's discriminator stays below random init up to 2e15 (-3.4 points), even where its "
          "AUC has risen to 0.66 against 0.54 for a scorer that sees only the token; started from the MLM encoder "
          "it clears the bar at 2e15 (+4.0)")
# The demo preset's vocab: 8,000 WordPieces of the corpus alone. A 46k merged vocab makes the hidden-64
# model's steps 4x slower and most of its embedding rows never trained (measured: docs/demo.md).
DEMO_VOCAB = (8_000, False)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """One end-to-end run; validated here."""

    out_dir: str = os.path.join("runs", "demo")
    corpus: tuple[str, ...] = (DEFAULT_CORPUS,)
    preset: str = "demo"
    hparams: str | None = None  # JSON string or file, over the preset (original keys)
    train_steps: int | None = None  # shortcut for num_train_steps (warm-up capped at 10%)
    clean_preset: str = "default"
    # None: the preset's (DEMO_VOCAB for "demo", else 30,000 merged with the bundled KoELECTRA vocab, as the
    # vocab stage does by default)
    vocab_size: int | None = None  # of the trained vocab, before merging
    merge_vocab: bool | None = None
    num_processes: int = 1
    seed: int = 0
    probe: ProbeConfig = ProbeConfig()
    run_probe: bool = True
    force: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        vocab_size, merge = DEMO_VOCAB if self.preset == "demo" else (30_000, True)
        if self.vocab_size is None:
            object.__setattr__(self, "vocab_size", vocab_size)
        if self.merge_vocab is None:
            object.__setattr__(self, "merge_vocab", merge)
        if self.train_steps is not None and self.train_steps < 1:
            raise UserError(f"--train-steps must be >= 1, got {self.train_steps}")
        if not self.corpus:
            raise UserError("no corpus given")
        if fileio.is_gcs(self.out_dir):
            raise UserError(f"--out-dir must be a local folder (the demo probes the model locally): {self.out_dir}")
        if self.num_processes < 1:
            raise UserError(f"--num-processes must be >= 1, got {self.num_processes}")


class Paths(NamedTuple):
    """Where every stage writes, under the output folder (the layout run_pretraining.py uses)."""

    corpus: str
    vocab_dir: str
    records: str
    model_dir: str
    hf: str
    probe: str
    curves: str
    stages: str
    summary: str

    @property
    def vocab_file(self) -> str:
        return os.path.join(self.vocab_dir, "vocab.txt")

    @property
    def discriminator(self) -> str:
        return os.path.join(self.hf, "discriminator")

    @property
    def generator(self) -> str:
        return os.path.join(self.hf, "generator")


def layout(out_dir: str) -> Paths:
    j = lambda *p: os.path.join(out_dir, *p)  # noqa: E731
    return Paths(j("corpus"), j("vocab"), j("pretrain_tfrecords"), j("models", MODEL_NAME), j("hf"),
                 j("probe.json"), j("curves.png"), j("stages"), j(SUMMARY))


# ---- the stages ----------------------------------------------------------------------------


def pretrain_config(cfg: DemoConfig, vocab_size: int):
    """The preset's hparams, the user's `--hparams` over them, then the built vocab's size."""
    from pretrain.config import config_path, from_hparams, load_hparams

    overrides = load_hparams(cfg.hparams)
    overrides["vocab_size"] = vocab_size
    if cfg.train_steps is not None:
        overrides["num_train_steps"] = cfg.train_steps
        if "num_warmup_steps" not in overrides:
            base_warmup = from_hparams(config_path(cfg.preset)).num_warmup_steps
            overrides["num_warmup_steps"] = min(base_warmup, cfg.train_steps // 10)
    return from_hparams(overrides, base=config_path(cfg.preset))


def _clean(cfg: DemoConfig, paths: Paths) -> dict[str, Any]:
    from data_prep import clean

    stats = clean.run(clean.CleanConfig(inputs=cfg.corpus, output=paths.corpus, preset=cfg.clean_preset,
                                        num_processes=cfg.num_processes))
    return {"lines_in": stats.lines_in, "lines_kept": stats.lines_out, "documents": stats.documents_out,
            "chars_kept": stats.chars_out, "dropped": {k: v for k, v in stats.dropped.items() if v}}


def _vocab(cfg: DemoConfig, paths: Paths) -> dict[str, Any]:
    from data_prep import vocab

    config = vocab.VocabConfig(inputs=(paths.corpus,), output=paths.vocab_dir, vocab_size=cfg.vocab_size,
                               **({} if cfg.merge_vocab else {"merge_with": None}))
    report = vocab.run(config)
    sizes = report["sizes"]
    held = report.get("heldout") or {}
    return {"vocab_size": sizes["merged"], "trained_tokens": sizes["trained"],
            "added_from_merge_vocab": sizes["added_from_merge_vocab"], "heldout_unk_rate": held.get("unk_rate"),
            "heldout_tokens_per_word": held.get("tokens_per_word")}


def _records(cfg: DemoConfig, paths: Paths, max_seq_length: int) -> dict[str, Any]:
    from data_prep import build

    summary = build.build(build.BuildConfig(corpus_dir=paths.corpus, vocab_file=paths.vocab_file,
                                            output_dir=paths.records, max_seq_length=max_seq_length,
                                            num_processes=cfg.num_processes, seed=cfg.seed))
    m = summary.manifest
    return {"examples": m.num_examples, "tokens": m.num_tokens, "shards": m.num_shards,
            "max_seq_length": m.max_seq_length}


def _pretrain(paths: Paths, train_cfg) -> dict[str, Any]:
    from absl import logging

    from pretrain.training import trainer as training
    from workflow import flops

    logging.set_verbosity(logging.INFO)
    start = time.time()
    run = training.check_inputs(train_cfg, paths.records, paths.vocab_file)
    result = training.train(run, paths.model_dir)
    m = result.metrics
    figures: dict[str, Any] = {"steps": result.step, "seconds": round(time.time() - start, 1),
                               "flops": result.step * flops.train_flops_per_step(train_cfg),
                               "train_batch_size": train_cfg.train_batch_size,
                               "max_seq_length": train_cfg.max_seq_length,
                               "hidden_size": train_cfg.hidden_size, "num_hidden_layers": train_cfg.num_hidden_layers}
    for key in ("generator_loss", "discriminator_loss", "discriminator_base_rate_loss", "generator_accuracy",
                "discriminator_accuracy", "discriminator_auc"):
        if key in m:
            figures[key] = round(float(m[key]), 4)
    return figures


def _export(paths: Paths) -> dict[str, Any]:
    from pretrain.conversion import export

    line = export.export(export.ExportConfig(model_dir=paths.model_dir, output_dir=paths.hf, overwrite=True))
    print(line, file=sys.stderr)
    return {"discriminator": paths.discriminator, "generator": paths.generator,
            "discriminator_parameters": _parameter_count(paths.discriminator),
            "generator_parameters": _parameter_count(paths.generator)}


def _parameter_count(folder: str) -> int:
    from safetensors import safe_open

    with safe_open(os.path.join(folder, "model.safetensors"), framework="numpy") as f:
        total = 0
        for name in f.keys():
            shape = f.get_slice(name).get_shape()
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total


def _probe(cfg: DemoConfig, paths: Paths) -> dict[str, Any]:
    from workflow import probe

    result = probe.run_probe(paths.discriminator, os.path.join(SENTIMENT_DIR, "train.tsv"),
                             os.path.join(SENTIMENT_DIR, "test.tsv"), cfg.probe)
    figures = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.to_dict().items()}
    fileio.write_text(paths.probe, json.dumps(figures, indent=2) + "\n")
    return figures


def _curves(paths: Paths, title: str) -> dict[str, Any]:
    from workflow import curves

    series = curves.read_curves(paths.model_dir)
    curves.plot_curves(series, paths.curves, title)
    return {"png": paths.curves,
            **{f"last_{panel}": round(s.last, 6) for panel, s in series.items()},
            "points": {panel: len(s.steps) for panel, s in series.items()}}


def _fmt(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}" if isinstance(value, float) else str(value)


def build_stages(cfg: DemoConfig, paths: Paths, figures: dict[str, dict[str, Any]]) -> list[Stage]:
    """The seven stages; later ones read earlier figures (the vocab size) when they run."""
    from foundation.stage_output import input_fingerprint
    from foundation.fileio import list_text_files

    def train_cfg():
        return pretrain_config(cfg, figures["vocab"]["vocab_size"])

    corpus_files = [f for path in cfg.corpus for f in list_text_files(path)]
    return [
        Stage("clean", paths.corpus,
              lambda: {"inputs": input_fingerprint(corpus_files), "preset": cfg.clean_preset},
              lambda: _clean(cfg, paths),
              lambda f: f"lines {f['lines_in']:,} -> {f['lines_kept']:,} kept, {f['documents']:,} documents"),
        Stage("vocab", paths.vocab_dir,
              lambda: {"vocab_size": cfg.vocab_size, "merge_vocab": cfg.merge_vocab},
              lambda: _vocab(cfg, paths),
              lambda f: f"vocab {f['vocab_size']:,} tokens ({f['trained_tokens']:,} trained on the corpus)"),
        Stage("records", paths.records,
              lambda: {"max_seq_length": train_cfg().max_seq_length, "seed": cfg.seed},
              lambda: _records(cfg, paths, train_cfg().max_seq_length),
              lambda f: f"{f['examples']:,} examples of {f['max_seq_length']} tokens ({f['tokens']:,} real tokens)"),
        Stage("pretrain", paths.model_dir,
              lambda: {"hparams": train_cfg().to_dict()},
              lambda: _pretrain(paths, train_cfg()),
              lambda f: f"{f['steps']:,} steps in {f['seconds']:.0f} s; " + ", ".join(
                  f"{k} {_fmt(f[k])}" for k in ("generator_loss", "discriminator_loss", "discriminator_auc") if k in f)),
        Stage("export", paths.hf, dict, lambda: _export(paths),
              lambda f: f"{paths.discriminator} ({f['discriminator_parameters'] / 1e6:.2f} M parameters) "
                        f"and {paths.generator}"),
        Stage("probe", paths.probe, lambda: dataclasses.asdict(cfg.probe), lambda: _probe(cfg, paths),
              lambda f: f"NSMC accuracy pretrained {f['pretrained_accuracy']:.3f} vs random init "
                        f"{f['random_init_accuracy']:.3f} ({f['train_rows']:,} train / {f['test_rows']:,} test rows)"),
        Stage("curves", paths.curves, dict,
              lambda: _curves(paths, f"ELECTRA {cfg.preset}: {', '.join(os.path.basename(c) for c in cfg.corpus)}"),
              lambda f: f"{f['png']}"),
    ]


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage (skipping finished ones); writes and returns the summary."""
    start = time.time()
    paths = layout(cfg.out_dir)
    pretrain_config(cfg, cfg.vocab_size)  # every hparam checked before any stage writes (the vocab size is a stand-in)
    figures: dict[str, dict[str, Any]] = {}
    stages = build_stages(cfg, paths, figures)  # a missing corpus is refused here, before any folder exists
    if not cfg.run_probe:
        stages = [s for s in stages if s.name != "probe"]
    with lease.hold(cfg.out_dir):  # one demo per folder: a second is refused naming the first
        fileio.makedirs(paths.stages)
        run_stages(stages, paths.stages, cfg.force, figures)
        summary: dict[str, Any] = {
            "corpus": list(cfg.corpus),
            "preset": cfg.preset,
            "model": {"discriminator": paths.discriminator, "generator": paths.generator},
            "curves": paths.curves,
            "stages": figures,
            "seconds": round(time.time() - start, 1),
        }
        if "probe" in figures:
            summary.update(headline_figures(figures["probe"]))
        fileio.write_text(paths.summary, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def headline_figures(probe_figures: dict[str, Any]) -> dict[str, Any]:
    """The summary's top-level figures: each downstream and intrinsic score beside its baseline."""
    out = {k: probe_figures[k] for k in ("pretrained_accuracy", "pretrained_std", "random_init_accuracy",
                                         "random_init_std", "majority_accuracy")}
    if probe_figures.get("frozen"):
        out["frozen_pretrained_accuracy"] = probe_figures["frozen"]["pretrained_accuracy"]
        out["frozen_random_init_accuracy"] = probe_figures["frozen"].get("random_init_accuracy")
    out.update(probe_figures.get("intrinsic") or {})
    return out


def final_lines(summary: dict[str, Any], out_dir: str) -> list[str]:
    from workflow import probe

    lines = [f"done in {summary['seconds'] / 60:.1f} min. Hugging Face model: {summary['model']['discriminator']} "
             f"(ElectraForPreTraining; generator: {summary['model']['generator']})"]
    if "probe" in summary["stages"]:
        lines += probe.summary_lines(probe.ProbeResult(**{k: v for k, v in summary["stages"]["probe"].items()
                                                          if k in probe.ProbeResult._fields}))
    lines.append(f"curves: {summary['curves']}; every stage's figures: {os.path.join(out_dir, SUMMARY)}")
    if "flops" in summary["stages"].get("pretrain", {}):
        lines.append(f"is that normal? this run pretrained with {summary['stages']['pretrain']['flops']:.1e} FLOPs; "
                     + PAYOFF)
    return lines


# ---- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> DemoConfig:
    d = DemoConfig()
    pd = ProbeConfig()
    p = console.parser(prog="electra-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default=d.out_dir, help="every stage's output and summary.json")
    p.add_argument("--corpus", nargs="+", default=list(d.corpus),
                   help="raw text files or folders (.txt/.gz; one sentence a line, blank line between documents) "
                        "(default: the bundled NSMC sample, data/corpus/nsmc_reviews_sample.txt)")
    p.add_argument("--preset", choices=PRESETS, default=d.preset,
                   help="pretraining hparams configs/<preset>.json (demo: a few CPU minutes; small/base: real runs)")
    p.add_argument("--hparams", default=None, help="JSON string or file of hparams over the preset's")
    p.add_argument("--train-steps", type=int, default=None, help="num_train_steps (default: the preset's)")
    p.add_argument("--clean-preset", default=d.clean_preset, help="electra-clean preset: default or kcelectra")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="size of the vocab trained on the corpus (default: 8,000 for the demo preset, else 30,000)")
    p.add_argument("--merge-vocab", action=argparse.BooleanOptionalAction, default=None,
                   help="merge the trained vocab with the bundled KoELECTRA vocab (default: not for the demo preset, "
                        "else yes)")
    p.add_argument("--num-processes", type=int, default=d.num_processes, help="for cleaning and records")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the record packing")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=d.run_probe,
                   help="score the model on NSMC sentiment against random init")
    p.add_argument("--probe-epochs", type=int, default=pd.epochs, help="the probe's fine-tuning epochs")
    p.add_argument("--probe-train-rows", type=int, default=pd.max_train_rows, help="0 = all")
    p.add_argument("--force", action="store_true", help="redo every stage")
    a = p.parse_args(argv)
    return DemoConfig(
        out_dir=a.out_dir, corpus=tuple(a.corpus), preset=a.preset, hparams=a.hparams, train_steps=a.train_steps,
        clean_preset=a.clean_preset, vocab_size=a.vocab_size, merge_vocab=a.merge_vocab,
        num_processes=a.num_processes, seed=a.seed,
        probe=dataclasses.replace(pd, epochs=a.probe_epochs, max_train_rows=a.probe_train_rows),
        run_probe=a.probe, force=a.force,
    )


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    summary = run_demo(cfg)
    for line in final_lines(summary, cfg.out_dir):
        print(line)
    return 0


def cli() -> None:
    run_cli(main)
