"""Export and import at ELECTRA-Small size: ours against `transformers`' own save/load.

One in-memory ELECTRA-Small RTD model (configs/small.json, KoELECTRA vocab, every weight
random) is exported by `pretrain.conversion.export.write_export` (TF variables -> safetensors via numpy).
The peer is what a user of `transformers` runs on the same weights: `save_pretrained` of
the PyTorch discriminator and generator plus the tokenizer. Both folders must hold the same
tensors bit for bit. Importing is timed the same way: `pretrain.conversion.importing.init_from_external`
vs `from_pretrained` of both networks. The PyTorch logits are compared with the TF model's
on real NSMC sentence pairs. Writes `bench/results/export.md`.

    .venv/bin/python bench/bench_export.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from fragment import write_fragment  # noqa: E402  (bench/ is the script's folder)


def cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def best_of(rounds: int, fn) -> tuple[float, float]:
    """Best (wall, CPU) seconds of `rounds` calls."""
    runs = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()

    import torch
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer, ElectraForMaskedLM, ElectraForPreTraining

    from data_prep import tokenization, vocab_files
    from pretrain import config as pconfig
    from pretrain.conversion import export, importing
    from pretrain.model import rtd

    cfg = pconfig.from_hparams(pconfig.config_path("small"))
    vocab_path = ROOT / "data" / "vocab" / "koelectra_v1_vocab.txt"
    tokens = vocab_files.load_vocab(str(vocab_path))
    settings = vocab_files.VocabSettings()
    model = rtd.build_model(cfg, rtd.special_ids(tokens))
    rng = np.random.default_rng(0)
    for v in model.weights:
        v.assign(rng.normal(0.0, 0.05, v.shape).astype(np.float32) + (1.0 if "gamma" in v.path else 0.0))
    params = sum(int(np.prod(v.shape)) for v in model.weights)

    # real NSMC sentence pairs, tokenised by the pipeline: [CLS] A [SEP] B [SEP], L = 128
    lines = [ln for ln in (ROOT / "data" / "corpus" / "nsmc_reviews_sample.txt").read_text(encoding="utf-8")
             .split("\n") if ln.strip()][:64]
    pipeline = tokenization.load_tokenizer(str(vocab_path), settings)
    ids = pipeline.encode_batch(lines)
    B, L = 16, 128
    batch = [np.zeros((B, L), np.int64) for _ in range(3)]
    for row in range(B):
        x, y = ids[2 * row][:60], ids[2 * row + 1][:60]
        seq = [pipeline.cls_id, *x, pipeline.sep_id, *y, pipeline.sep_id]
        batch[0][row, :len(seq)], batch[1][row, :len(seq)] = seq, 1
        batch[2][row, len(x) + 2:len(seq)] = 1

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        ours_dir, peer_dir = tmp / "ours", tmp / "peer"
        ours = best_of(a.rounds, lambda: export.write_export(model, cfg, 1, tokens, settings, str(ours_dir),
                                                             overwrite=True))
        disc = ElectraForPreTraining.from_pretrained(str(ours_dir / "discriminator")).eval()
        gen = ElectraForMaskedLM.from_pretrained(str(ours_dir / "generator")).eval()
        tok = AutoTokenizer.from_pretrained(str(ours_dir / "discriminator"))

        def peer_save():
            disc.save_pretrained(str(peer_dir / "discriminator"))
            gen.save_pretrained(str(peer_dir / "generator"))
            for part in ("discriminator", "generator"):
                tok.save_pretrained(str(peer_dir / part))

        peer = best_of(a.rounds, peer_save)
        identical = True
        for part in ("discriminator", "generator"):
            mine = load_file(str(ours_dir / part / "model.safetensors"))
            theirs = load_file(str(peer_dir / part / "model.safetensors"))
            identical &= mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
        size = sum(f.stat().st_size for f in ours_dir.rglob("model.safetensors"))

        fresh = rtd.build_model(cfg, rtd.special_ids(tokens))
        ours_in = best_of(a.rounds, lambda: importing.init_from_external(fresh, str(ours_dir)))
        peer_in = best_of(a.rounds, lambda: (ElectraForPreTraining.from_pretrained(str(peer_dir / "discriminator")),
                                             ElectraForMaskedLM.from_pretrained(str(peer_dir / "generator"))))

        with torch.no_grad():
            t = [torch.from_numpy(x) for x in batch]
            kw = dict(input_ids=t[0], attention_mask=t[1], token_type_ids=t[2])
            disc_diff = np.abs(disc(**kw).logits.numpy() - model.discriminator_logits(*batch).numpy()).max()
            gen_diff = np.abs(gen(**kw).logits.numpy() - model.generator_logits(*batch).numpy()).max()
            back_diff = np.abs(disc(**kw).logits.numpy() - fresh.discriminator_logits(*batch).numpy()).max()

    load = os.getloadavg()[0]
    rows = [
        ("export: ours `write_export` (TF -> safetensors via numpy)", *ours, peer[0] / ours[0], peer[1] / ours[1]),
        ("export: peer `save_pretrained` (PyTorch)", *peer, 1.0, 1.0),
        ("import: ours `init_from_external` (-> TF)", *ours_in, peer_in[0] / ours_in[0], peer_in[1] / ours_in[1]),
        ("import: peer `from_pretrained` (PyTorch)", *peer_in, 1.0, 1.0),
    ]
    for name, wall, cpu, rw, rc in rows:
        print(f"{name:58s} {wall:6.2f} s wall x{rw:4.2f}   {cpu:6.2f} CPU-s x{rc:4.2f}")
    print(f"tensors bit-identical: {identical}; max |logit diff| disc {disc_diff:.2e} gen {gen_diff:.2e} "
          f"import {back_diff:.2e}")

    md = [
        "### Export and import: `electra-export` vs `transformers` save/load",
        "",
        f"- Command: `python bench/bench_export.py --rounds {a.rounds}`",
        f"- Input: one ELECTRA-Small RTD model (`configs/small.json`: 12 layers, hidden 256, embedding 128, "
        f"generator as wide, KoELECTRA vocab 32,200), {params / 1e6:.1f} M weights, every one random; "
        f"two `model.safetensors` of {size / 1e6:.1f} MB together. Peer: `save_pretrained` of the same "
        "weights as PyTorch `ElectraForPreTraining` + `ElectraForMaskedLM` + tokenizer; best of "
        f"{a.rounds} rounds each, in one process. Ours also reads the TF variables and transposes every dense "
        "kernel to PyTorch layout; the peer's tensors are already in that layout.",
        f"- Machine: `nproc` = {os.cpu_count()}, {cpu_model()}, shared: load average {load:.1f} at the end.",
        f"- Same tensors, bit for bit, as the peer's own save: **{'yes' if identical else 'NO'}**",
        f"- Exactness on 16 real NSMC sentence pairs (L = 128, padded): max |PyTorch - TF| logit "
        f"discriminator {disc_diff:.1e}, generator MLM {gen_diff:.1e}; after importing the export back into "
        f"a fresh TF model {back_diff:.1e}.",
        "",
        "| run | wall s | speed vs peer (wall) | CPU s | speed vs peer (CPU) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {w:.2f} | {rw:.2f}x | {c:.2f} | {rc:.2f}x |" for n, w, c, rw, rc in rows],
        "",
    ]
    write_fragment("export.md", "\n".join(md))
    return 0 if identical and max(disc_diff, gen_diff, back_diff) < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
