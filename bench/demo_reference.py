"""The demo's pretraining, ours vs a `transformers` reference, both scored by the same probe.

Is a demo model that fine-tunes no better than random init our trainer's fault or the
objective's at this budget? This trains the reference RTD model (`bench/peer_rtd.py`:
`ElectraForMaskedLM` + `ElectraForPreTraining`, tied embeddings, torch AdamW) on the demo
run's own TFRecords with the run's sizes, batch, steps, learning-rate schedule, weight
decay (not on LayerNorm/bias) and loss weights, saves it as a Hugging Face folder with the
run's tokenizer, and runs the demo's probe (`workflow.probe.run_probe`, same rows, seed
and steps) on it. Ours comes from the run's `summary.json`.

Writes `bench/results/demo_reference.md`.
Usage: python bench/demo_reference.py [--run-dir runs/demo] [--seed 0]
(runs `electra-demo --out-dir RUN_DIR` first when RUN_DIR has no summary.json)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_prep import records, vocab_files  # noqa: E402
from pretrain.training import checkpoints  # noqa: E402
from workflow import probe  # noqa: E402
from pretrain.config import from_hparams  # noqa: E402
from pretrain.training.optimization import EXCLUDE_FROM_WEIGHT_DECAY, learning_rate_schedule  # noqa: E402
from fragment import write_fragment  # noqa: E402  (bench/ is the script's folder)
from peer_rtd import PeerDims, adamw, build_peer, make_step  # noqa: E402

FEATURES = ("input_ids", "input_mask", "segment_ids")
TAIL = 20  # steps averaged for the final losses


def read_examples(record_dir: str, seq: int) -> dict[str, np.ndarray]:
    """Every example of the run's shards, through the project's own parser."""
    from foundation.quiet_tf import tf

    ds = tf.data.TFRecordDataset(records.list_shards(record_dir)).batch(4096)
    parts: dict[str, list] = {k: [] for k in FEATURES}
    for batch in ds.map(lambda s: records.parse_example(s, seq)):
        for k in FEATURES:
            parts[k].append(batch[k].numpy())
    return {k: np.concatenate(v).astype(np.int64) for k, v in parts.items()}


def train_reference(run_dir: Path, out: Path, seed: int) -> dict:
    """Pretrain the reference on the run's records as the run was configured; save it to `out`."""
    import torch

    model_dir = run_dir / "models" / "electra"
    cfg = from_hparams(checkpoints.read_run_config(str(model_dir))["hparams"])
    vocab = vocab_files.load_vocab(str(model_dir / "vocab.txt"))
    data = {k: torch.from_numpy(v) for k, v in read_examples(str(run_dir / "pretrain_tfrecords"),
                                                            cfg.max_seq_length).items()}
    dims = [PeerDims(d.hidden_size, d.num_hidden_layers, d.num_attention_heads, d.intermediate_size)
            for d in (cfg.discriminator_dims(), cfg.generator_dims())]
    peer = build_peer(len(vocab), cfg.embedding_size, cfg.max_position_embeddings, dims[0], dims[1],
                      dropout=cfg.hidden_dropout_prob, seed=seed)
    optimizer = adamw(peer, cfg.learning_rate, cfg.weight_decay_rate, exclude=EXCLUDE_FROM_WEIGHT_DECAY)
    schedule = learning_rate_schedule(learning_rate=cfg.learning_rate, num_train_steps=cfg.num_train_steps,
                                      num_warmup_steps=cfg.num_warmup_steps, lr_decay_power=cfg.lr_decay_power)
    # update i runs at the rate ours evaluates at `iterations` = i, the same schedule object
    rates = [float(schedule(s)) for s in range(cfg.num_train_steps + 1)]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: rates[s] / cfg.learning_rate)
    step = make_step(peer, optimizer, vocab, cfg.max_predictions_per_seq, cfg.mask_prob, cfg.gen_weight,
                     cfg.disc_weight, schedule=scheduler.step)
    generator = torch.Generator().manual_seed(seed)
    total, batch = len(data["input_ids"]), cfg.train_batch_size
    order = torch.cat([torch.randperm(total, generator=generator)
                       for _ in range(math.ceil(cfg.num_train_steps * batch / total))])
    results, start = [], time.time()
    for i in range(cfg.num_train_steps):
        rows = order[i * batch:(i + 1) * batch]
        results.append(step(*(data[k][rows] for k in FEATURES)))
        if (i + 1) % 50 == 0 or i + 1 == cfg.num_train_steps:
            r = results[-1]
            print(f"reference step {i + 1}/{cfg.num_train_steps}: mlm {r.mlm_loss:.3f} acc {r.mlm_accuracy:.3f} "
                  f"disc {r.disc_loss:.3f} ({(i + 1) / (time.time() - start):.1f} steps/s)", flush=True)
    peer.discriminator.save_pretrained(out)
    tokenizer = run_dir / "hf" / "discriminator"
    for f in tokenizer.iterdir():  # the run's tokenizer files, not its weights or config
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, out / f.name)
    tail = results[-TAIL:]
    return {"seconds": time.time() - start,
            "generator_loss": float(np.mean([r.mlm_loss for r in tail])),
            "generator_accuracy": float(np.mean([r.mlm_accuracy for r in tail])),
            "discriminator_loss": float(np.mean([r.disc_loss for r in tail])), "config": cfg}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="demo_reference.md")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    if not (run_dir / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "workflow.pipeline", "--out-dir", str(run_dir)], cwd=ROOT, check=True)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    ours_pre, ours_probe = summary["stages"]["pretrain"], summary["stages"].get("probe")
    if ours_probe is None:
        raise SystemExit(f"{run_dir} was run with --no-probe; rerun it with the probe")

    out = run_dir / "reference_hf"
    ref = train_reference(run_dir, out, args.seed)
    scored = probe.run_probe(str(out), str(ROOT / probe.DEFAULT_TRAIN), str(ROOT / probe.DEFAULT_TEST))
    print("\n".join(probe.summary_lines(scored)))
    cfg = ref["config"]

    def row(name, gen_loss, gen_acc, disc_loss, pre, rand) -> str:
        return (f"| {name} | {gen_loss:.3f} / {gen_acc:.3f} | {disc_loss:.3f} | {pre:.4f} | {rand:.4f} | "
                f"{100 * (pre - rand):+.1f} |")

    text = f"""## The demo's pretraining: ours vs a `transformers` reference, same records, same probe

Command: `python bench/demo_reference.py {' '.join(sys.argv[1:])}`. Input: the demo run `{run_dir.name}`'s
TFRecords ({summary['stages']['records']['examples']:,} examples x {cfg.max_seq_length} tokens) and settings:
hidden {cfg.hidden_size} x {cfg.num_hidden_layers} layers, generator hidden {cfg.generator_dims().hidden_size},
batch {cfg.train_batch_size}, {cfg.num_train_steps} steps, lr {cfg.learning_rate:g} (warm-up {cfg.num_warmup_steps},
linear decay), gen_weight {cfg.gen_weight:g}, disc_weight {cfg.disc_weight:g}, adam_bias_correction
{str(cfg.adam_bias_correction).lower()} (the reference: torch AdamW, always bias-corrected). Reference:
`bench/peer_rtd.py` (`ElectraForMaskedLM` + `ElectraForPreTraining`, tied embeddings, PyTorch eager,
{ref['seconds']:.0f} s). Both exports are scored by the demo's probe: {scored.train_rows:,} NSMC train rows,
{scored.steps} steps, {scored.test_rows:,} test rows (one accuracy is +-0.45 points); the random-init twin is
built from each folder's own config. Final losses: mean of the last {TAIL} steps (reference), the last logged
window (ours).

| pretraining | generator loss / accuracy | discriminator loss | pretrained | random init | gain (points) |
|---|---|---|---:|---:|---:|
{row("ours (`pretrain.training.trainer`)", ours_pre["generator_loss"], ours_pre.get("generator_accuracy", float("nan")),
     ours_pre["discriminator_loss"], ours_probe["pretrained_accuracy"], ours_probe["random_init_accuracy"])}
{row("reference (`transformers`, PyTorch)", ref["generator_loss"], ref["generator_accuracy"],
     ref["discriminator_loss"], scored.pretrained_accuracy, scored.random_init_accuracy)}

Discriminator base rate (binary entropy of the replaced share) in our run:
{ours_pre.get("discriminator_base_rate_loss", float("nan")):.3f}.
"""
    write_fragment(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
