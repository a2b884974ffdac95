"""workflow.smoke: the report's arithmetic by hand, and a real smoke run of the trainer on the CPU."""
import json
import os
import subprocess
import sys

import pytest

from foundation.errors import UserError
from rtd_helpers import ROOT, write_nsmc_records
from rtd_helpers import tiny_run_hparams as hp
from workflow import smoke


def test_report_against_the_expected_rate_with_time_and_cost():
    # v3-8 at 40% of 420 TFLOP/s is 1.68e14 FLOP/s: 1,000 examples/s at 1.68e11 FLOPs each
    assert smoke.expected_examples_per_second(1.68e11, "v3-8") == pytest.approx(1000.0)
    assert smoke.expected_examples_per_second(1.68e11, "v3-32") == pytest.approx(4000.0)
    assert smoke.expected_examples_per_second(1.68e11, "v4-8") is None
    lines = smoke.report([50.0, 900.0, 1100.0, 1000.0], flops_per_example=1.68e11, num_train_steps=800_000,
                         batch_size=512, accelerator_type="v3-8", capacity="spot")
    assert lines == [
        "measured: 1,000 examples/s (median of 3 host calls, the first left out: it compiles)",
        "expected: about 1,000 examples/s on a v3-8 (40% of its bfloat16 peak at 1.68e+11 FLOPs per example); "
        "measured is 100% of that",
        "full run: 800,000 steps x 512 examples at this rate take about 113.8 h (4.7 days), about $273 spot at "
        "$2.40/h (list price)"]
    slow = smoke.report([400.0], flops_per_example=1.68e11, num_train_steps=1000, batch_size=512,
                        accelerator_type="v3-8", capacity="on-demand")
    assert slow[0] == "measured: 400 examples/s (median of 1 host calls)"
    assert slow[2].startswith("WARNING: under half the expected rate: the step may wait for its input")
    assert slow[3].endswith("about $3 on-demand at $8.00/h (list price)")
    with pytest.raises(UserError, match="logged no progress line"):
        smoke.report([], flops_per_example=1.0, num_train_steps=1, batch_size=1, accelerator_type="v3-8",
                     capacity="spot")


@pytest.mark.slow  # about a minute on 2 shared cores: the trainer's start-up and 3 host calls
def test_a_smoke_run_of_the_real_trainer(tmp_path):
    data = tmp_path / "data"
    write_nsmc_records(data, max_seq_length=32, num_examples=64, num_shards=2)
    stale = data / "models" / "tiny-smoke" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier smoke run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "workflow.smoke", "--data-dir", str(data), "--vocab-file", str(data / "vocab.txt"),
         "--model-name", "tiny", "--hparams", hp(num_train_steps=1000, iterations_per_loop=2), "--accelerator-type",
         "v3-8", "--steps", "6"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"smoke run: 6 steps into {data / 'models' / 'tiny-smoke'}"
    report = lines[next(i for i, line in enumerate(lines) if line.startswith("measured: ")):]
    assert report[0].endswith("examples/s (median of 2 host calls, the first left out: it compiles)")
    assert report[1].startswith("expected: about ") and " on a v3-8 " in report[1]
    assert report[2].startswith("WARNING: under half the expected rate")  # a CPU is no TPU
    assert report[3].startswith("full run: 1,000 steps x 8 examples at this rate take about ")
    assert report[3].endswith("on-demand at $8.00/h (list price)") and len(report) == 4
    assert not stale.exists()  # the throwaway folder was emptied first
    saved = json.loads((data / "models" / "tiny-smoke" / "run_config.json").read_text())["hparams"]
    assert (saved["num_train_steps"], saved["save_checkpoints_steps"]) == (6, 6)
    assert not (data / "models" / "tiny").exists()  # the real run's folder is not touched
