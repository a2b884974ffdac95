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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ELECTRA_SHARED_DIR", ROOT.parent / "shared"))
DUMP = SHARED / "data" / "nsmc_reviews.txt.gz"
WORK = ROOT / "runs" / "payoff"

# The recipe (see docs/payoff.md for why each value): a 4-layer, 128-wide discriminator on the
# 586k-review dump, 128-token packed records, generator at half the width, Adam bias correction
# (the original's missing correction makes a short run's first updates 3x too large), bfloat16.
RECIPE = {
    "model_size": "small", "embedding_size": 128, "hidden_size": 128, "num_hidden_layers": 4,
    "num_attention_heads": 2, "intermediate_size": 512, "generator_hidden_size": 0.5,
    "max_seq_length": 128, "max_position_embeddings": 128, "train_batch_size": 64,
    "learning_rate": 1e-3, "adam_bias_correction": True, "num_warmup_steps": 500,
    "num_train_steps": 40000, "save_checkpoints_steps": 250, "keep_checkpoint_max": 0,
    "iterations_per_loop": 50, "log_every_steps": 50, "precision": "bfloat16", "jit_compile": True,
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("prepare", "pretrain", "score"))
    p.add_argument("--work-dir", default=str(WORK))
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default="rtd")
    p.add_argument("--num-processes", type=int, default=2)
    args = p.parse_args()
    work = Path(args.work_dir)
    if args.command == "prepare":
        prepare(work, args.num_processes)
    elif args.command == "pretrain":
        pretrain(work, args.objective)


if __name__ == "__main__":
    main()
