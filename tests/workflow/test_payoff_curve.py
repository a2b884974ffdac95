"""bench/payoff.py end to end at toy sizes: the bundled corpus less the probe's rows, three decayed budgets of
both objectives, the two-stage variant after them, every point exported and probed by the project's commands."""
import json
import subprocess
import sys

import pytest

from conftest import DATA, ROOT

sys.path.insert(0, str(ROOT / "bench"))
import payoff  # noqa: E402

TOY = {"embedding_size": 32, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 1,
       "intermediate_size": 128, "max_seq_length": 32, "max_position_embeddings": 32, "train_batch_size": 8,
       "num_warmup_steps": 2, "save_checkpoints_steps": 4, "keep_checkpoint_max": 50, "iterations_per_loop": 4,
       "log_every_steps": 4, "precision": "float32"}


@pytest.mark.slow
def test_the_toy_curve_scores_every_budget_and_the_two_stage_variant(tmp_path):
    work, results = tmp_path / "runs", tmp_path / "results"
    common = ["--work-dir", str(work), "--corpus", str(DATA / "corpus" / "nsmc_reviews_sample.txt"),
              "--vocab-size", "2000", "--hparams", json.dumps(TOY), "--num-processes", "1"]
    script = [sys.executable, str(ROOT / "bench" / "payoff.py")]
    subprocess.run(script + ["prepare", *common], check=True, capture_output=True, timeout=600)
    mlm_step = payoff.flops_per_step(payoff.objective_hparams(work, "mlm", TOY))
    budgets = [mlm_step * s for s in (16, 32, 64)]  # RTD's steps cost more: fewer of them per budget
    probe = ["--budgets", *map(str, budgets), "--train-tsv", str(DATA / "nsmc_sentiment" / "train.tsv"), "--test-tsv",
             str(DATA / "nsmc_sentiment" / "test.tsv"), "--train-rows", "40", "--dev-rows", "40", "--test-rows", "80",
             "--lr-grid", "1e-3", "--protocols", "plain", "--seeds", "2", "--jobs", "1", "--results-dir", str(results)]
    out = subprocess.run(script + ["curve", *common, *probe], capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]

    points = json.loads((results / "payoff.json").read_text())["points"]
    assert [(p["objective"], p["budget_flops"]) for p in points] == [
        *[(o, b) for b in budgets for o in ("mlm", "rtd")], ("rtd-from-mlm", budgets[-1])]
    for objective in ("mlm", "rtd"):
        per_step = payoff.flops_per_step(payoff.objective_hparams(work, objective, TOY))
        plan = payoff.plan(per_step, budgets, payoff.DECAY_FRACTION, TOY["num_warmup_steps"])
        got = [(p["branch_step"], p["step"], p["flops"]) for p in points if p["objective"] == objective]
        assert got == [(b.branch_step, b.end_step, pytest.approx(b.end_step * per_step)) for b in plan]
    variant = points[-1]
    mlm_start = payoff.plan(mlm_step, budgets, payoff.DECAY_FRACTION, 2)[-2]  # the first stage: mlm's middle budget
    both_stages = mlm_start.end_step * mlm_step + variant["step"] * payoff.flops_per_step(
        payoff.objective_hparams(work, "rtd-from-mlm", TOY))
    assert variant["branch_step"] == 0 and variant["flops"] == pytest.approx(both_stages)
    assert budgets[-1] <= variant["flops"] < budgets[-1] * 1.05
    run_config = json.loads((work / "data" / "models" / "rtd-from-mlm" / "run_config.json").read_text())["hparams"]
    assert (run_config["generator_hidden_size"], run_config["num_train_steps"]) == (1.0, variant["step"])
    # its discriminator started from the MLM control's generator: 16 encoder weights of one layer, no projection
    assert (f"initialised weights from {work}/data/models/mlm-decay-{budgets[1]:.0e}".replace("+", "")
            + f"/ckpt-{mlm_start.end_step}") in out.stderr
    assert "discriminator encoder from the generator (16 weights)" in out.stderr
    assert all(0 <= p["pretrained_mean"] <= 1 and p["seeds"] == 2 for p in points)
    md = (results / "payoff.md").read_text()
    assert f"- rtd-from-mlm: {payoff.VARIANTS['rtd-from-mlm'].note}" in md
    # `report` rebuilds the same points from the run folder without training or probing anything
    before = (results / "payoff.json").read_bytes()
    report = subprocess.run(script + ["report", *common, *probe], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0 and "electra-" not in report.stdout and (results / "payoff.json").read_bytes() == before
