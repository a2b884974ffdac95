"""A smoke run before days: a few host calls of the real run, to a throwaway model name, and what
they say about the whole run: examples/s against the rate expected for the TPU, time and cost.

    python -m workflow.smoke --data-dir gs://B/RUN --vocab-file gs://B/RUN/vocab/vocab.txt \\
        --model-name electra-small --hparams configs/small.json --accelerator-type v3-8 --capacity spot

The trainer runs as `run_pretraining.py` would run for the real thing (same data, hparams and
TPU), into `models/NAME-smoke/` (emptied first), with `num_train_steps` cut to `--steps`.
Nothing here imports TensorFlow: on a TPU VM that would take the TPU from the trainer.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Sequence

from cloudops.restarts import parse_progress
from foundation import console, fileio
from foundation.errors import UserError, run_cli

UTILISATION = 0.40  # share of the bfloat16 peak the estimates assume (docs/tpu_v3_8.md, BENCHMARKS.md)
PEAK_TFLOPS_PER_CORE = {"v2": 180.0 / 8, "v3": 420.0 / 8}  # Google's v2-8 and v3-8 figures
# $ per core-hour, the v3-8's list price (docs/tpu_v3_8.md: $8.00/h on demand, $2.40/h spot/preemptible)
PRICE_PER_CORE_HOUR = {("v3", "on-demand"): 1.00, ("v3", "spot"): 0.30, ("v3", "preemptible"): 0.30}


def tpu_cores(accelerator_type: str) -> tuple[str, int] | None:
    """("v3", 8) for v3-8; None for types whose name does not count cores (v4 and later are not tabled)."""
    generation, _, count = accelerator_type.partition("-")
    return (generation, int(count)) if generation in PEAK_TFLOPS_PER_CORE and count.isdigit() else None


def expected_examples_per_second(flops_per_example: float, accelerator_type: str) -> float | None:
    """The rate at UTILISATION of the TPU's peak, for a step's hardware FLOPs (3x forward) per example."""
    cores = tpu_cores(accelerator_type)
    if cores is None:
        return None
    return UTILISATION * PEAK_TFLOPS_PER_CORE[cores[0]] * 1e12 * cores[1] / flops_per_example


def report(rates: Sequence[float], *, flops_per_example: float, num_train_steps: int, batch_size: int,
           accelerator_type: str, capacity: str) -> list[str]:
    """What the smoke run's host-call rates say (the first call compiles, so it is left out when there are more)."""
    if not rates:
        raise UserError("the smoke run logged no progress line: see its output above")
    measured = statistics.median(rates[1:] or rates)
    lines = [f"measured: {measured:,.0f} examples/s (median of {len(rates[1:] or rates)} host calls"
             f"{', the first left out: it compiles' if len(rates) > 1 else ''})"]
    expected = expected_examples_per_second(flops_per_example, accelerator_type)
    if expected is None:
        lines.append(f"expected: no figure for {accelerator_type} (tabled: v2 and v3)")
    else:
        lines.append(f"expected: about {expected:,.0f} examples/s on a {accelerator_type} ({UTILISATION:.0%} of its "
                     f"bfloat16 peak at {flops_per_example:.3g} FLOPs per example); measured is "
                     f"{measured / expected:.0%} of that")
        if measured < 0.5 * expected:
            lines.append("WARNING: under half the expected rate: the step may wait for its input (rerun with "
                         "--profile and open the Profile tab; check that the bucket is in the TPU's region)")
    hours = num_train_steps * batch_size / measured / 3600
    cost = ""
    cores = tpu_cores(accelerator_type)
    price = PRICE_PER_CORE_HOUR.get((cores[0], capacity)) if cores else None
    if price is not None and cores is not None:
        cost = f", about ${hours * price * cores[1]:,.0f} {capacity} at ${price * cores[1]:.2f}/h (list price)"
    lines.append(f"full run: {num_train_steps:,} steps x {batch_size} examples at this rate take about {hours:,.1f} h "
                 f"({hours / 24:.1f} days){cost}")
    return lines


def _empty(directory: str) -> None:
    for path in fileio.walk(directory) if fileio.exists(directory) else []:
        fileio.remove(path)


def main(argv: list[str] | None = None) -> int:
    p = console.parser(prog="python -m workflow.smoke", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--vocab-file", required=True)
    p.add_argument("--model-name", required=True, help="the real run's name; the smoke run writes NAME-smoke")
    p.add_argument("--hparams", action="append", required=True, help="as for run_pretraining.py")
    p.add_argument("--accelerator-type", required=True, help="e.g. v3-8")
    p.add_argument("--capacity", default="on-demand", help="on-demand, spot, reserved or preemptible (for the cost)")
    p.add_argument("--steps", type=int, default=None, help="default: 5 host calls (5 x iterations_per_loop)")
    p.add_argument("--profile", action="store_true", help="also write a TensorBoard profile of the third host call")
    args = p.parse_args(argv)
    child_env = dict(os.environ)
    os.environ["TPU_LOAD_LIBRARY"] = "0"  # importing the TPU build of TensorFlow here would take the trainer's TPU
    from pretrain.config import from_hparams, layer_hparams
    from workflow.flops import train_flops_per_step

    given = layer_hparams(args.hparams)
    cfg = from_hparams(given)
    steps = args.steps or 5 * cfg.iterations_per_loop
    smoke = {"num_train_steps": steps, "save_checkpoints_steps": steps, "save_checkpoints_secs": 0.0,
             "num_warmup_steps": min(cfg.num_warmup_steps, steps), "profile_host_call": 3 if args.profile else 0}
    name = f"{args.model_name}-smoke"
    model_dir = fileio.join(args.data_dir, "models", name)
    _empty(model_dir)
    cmd = [sys.executable, "run_pretraining.py", "--data-dir", args.data_dir, "--vocab-file", args.vocab_file,
           "--model-name", name, *[w for h in args.hparams for w in ("--hparams", h)], "--hparams", json.dumps(smoke)]
    print(f"smoke run: {steps} steps into {model_dir}", flush=True)
    rates = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env) as proc:
        for line in proc.stdout:  # type: ignore[union-attr]
            sys.stdout.write(line)
            progress = parse_progress(line)
            if progress is not None:
                rates.append(progress.examples_per_second)
    if proc.returncode != 0:
        raise UserError(f"the smoke run failed (exit status {proc.returncode}); its output is above")
    # the model as the trainer resolved it (vocab_size from the data where the hparams leave it)
    resolved = from_hparams(json.loads(fileio.read_text(fileio.join(model_dir, "run_config.json")))["hparams"])
    flops = 1.5 * train_flops_per_step(resolved) / resolved.train_batch_size  # its backward counts 1x: hardware's is 2x
    for line in report(rates, flops_per_example=flops, num_train_steps=cfg.num_train_steps,
                       batch_size=cfg.train_batch_size, accelerator_type=args.accelerator_type,
                       capacity=args.capacity):
        print(line)
    if args.profile:
        print(f"profile: tensorboard --logdir {model_dir} (Profile tab)")
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
