"""Record the demo run for BENCHMARKS.md: stage figures, downstream probe numbers, learning curves.

Runs the main job (`electra-demo`, every stage redone unless --reuse) and writes
`bench/results/demo.md` plus `bench/results/demo_curves.png`, so the numbers in
BENCHMARKS.md come from a run, never from typing.
Usage: python bench/demo_record.py [--out-dir runs/demo] [--reuse] [-- extra electra-demo flags]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    return f"{os.cpu_count()} CPUs (`nproc`), {cpu}; shared with other jobs, so times are noisy"


def stage_seconds(summary: dict) -> float:
    """The stages' own times: a --reuse record's run skipped them, its total is seconds."""
    return sum(stage.get("seconds", 0) for stage in summary["stages"].values())


def render(summary: dict, command: str, wall: float | None) -> str:
    s = summary["stages"]
    rows = [
        ("clean", f"{s['clean']['lines_in']:,} lines in, {s['clean']['lines_kept']:,} kept, "
                  f"{s['clean']['documents']:,} documents"),
        ("vocab", f"{s['vocab']['vocab_size']:,} tokens ({s['vocab']['trained_tokens']:,} trained on the corpus, "
                  f"{s['vocab']['added_from_merge_vocab']:,} from KoELECTRA)"),
        ("records", f"{s['records']['examples']:,} examples x {s['records']['max_seq_length']} tokens "
                    f"({s['records']['tokens']:,} real tokens)"),
        ("pretrain", f"{s['pretrain']['steps']:,} steps, batch {s['pretrain']['train_batch_size']}, hidden "
                     f"{s['pretrain']['hidden_size']} x {s['pretrain']['num_hidden_layers']} layers; final generator "
                     f"loss {s['pretrain'].get('generator_loss', float('nan')):.3f}, discriminator loss "
                     f"{s['pretrain'].get('discriminator_loss', float('nan')):.3f} (base rate "
                     f"{s['pretrain'].get('discriminator_base_rate_loss', float('nan')):.3f}), AUC "
                     f"{s['pretrain'].get('discriminator_auc', float('nan')):.3f}"),
        ("export", f"discriminator {s['export']['discriminator_parameters'] / 1e6:.2f} M parameters, "
                   f"generator {s['export']['generator_parameters'] / 1e6:.2f} M"),
    ]
    if "probe" in s:
        p = s["probe"]
        rows.append(("probe", f"{p['train_rows']:,} train / {p['test_rows']:,} test rows, {p['steps']} steps per model"))
    rows.append(("curves", "below"))
    lines = [
        "## The demo (main job) end to end",
        "",
        f"Command: `{command}`  ",
        f"Input: {', '.join(f'`{os.path.relpath(os.path.realpath(c), ROOT)}`' for c in summary['corpus'])}, preset "
        f"`{summary['preset']}` (`configs/{summary['preset']}.json`)  ",
        f"Machine: {machine()}  ",
        f"Total: {stage_seconds(summary) / 60:.1f} min of stages"
        + (f" (this record: {wall / 60:.1f} min)" if wall else ""),
        "",
        "| stage | figures | seconds |",
        "|---|---|---|",
        *[f"| {name} | {text} | {s[name].get('seconds', 0):.0f} |" for name, text in rows],
        "",
    ]
    if "probe" in s:
        p = s["probe"]
        gap = p["pretrained_accuracy"] - p["random_init_accuracy"]
        lines += [
            "**Downstream check** (NSMC sentiment, `electra-probe`: the exported discriminator fine-tuned with "
            "`transformers` on CPU, next to the same architecture from random initialisation, same steps and seed):",
            "",
            "| model | test accuracy | final train loss |",
            "|---|---|---|",
            f"| pretrained (demo) | {p['pretrained_accuracy']:.3f} | {p['pretrained']['train_loss']:.3f} |",
            f"| random init | {p['random_init_accuracy']:.3f} | {p['random_init']['train_loss']:.3f} |",
            f"| majority class | {p['majority_accuracy']:.3f} | |",
            "",
            f"Pretraining gain: {gap * 100:+.1f} accuracy points.",
            "",
        ]
    lines += ["Learning curves of the demo run (from its TensorBoard events):", "",
              "![demo learning curves](bench/results/demo_curves.png)", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="runs/demo")
    parser.add_argument("--reuse", action="store_true", help="keep finished stages of an earlier run")
    parser.add_argument("demo_args", nargs="*", help="more electra-demo flags (after --)")
    args = parser.parse_args()
    os.chdir(ROOT)
    import foundation.quiet_tf  # noqa: F401  (TensorFlow without its start-up notices, before the demo imports it)
    from workflow import pipeline

    argv = ["--out-dir", args.out_dir, *([] if args.reuse else ["--force"]), *args.demo_args]
    start = time.time()
    code = pipeline.main(argv)
    wall = time.time() - start
    if code:
        return code
    summary = json.loads(Path(args.out_dir, pipeline.SUMMARY).read_text())
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    shutil.copyfile(summary["curves"], results / "demo_curves.png")
    command = "electra-demo " + " ".join(argv)
    (results / "demo.md").write_text(render(summary, command, wall))
    print(f"wrote {results / 'demo.md'} and demo_curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
