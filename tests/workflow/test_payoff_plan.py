"""bench/payoff.py's plan: which checkpoint each budget branches from and where its decay ends."""
import sys

import pytest

from rtd_helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import payoff  # noqa: E402


def test_each_budget_branches_85_percent_in_and_ends_at_its_flops():
    budgets = payoff.plan(1e11, (1e14, 3e14, 2e15), decay_fraction=0.15, warmup=500)
    assert budgets == [payoff.Budget(1e14, 850, 1000), payoff.Budget(3e14, 2550, 3000),
                       payoff.Budget(2e15, 17000, 20000)]
    assert payoff.plan(3e11, (1e14,), decay_fraction=0.15) == [payoff.Budget(1e14, 283, 334)]
    with pytest.raises(SystemExit, match="too few to branch after the 500 warm-up steps"):
        payoff.plan(1e12, (1e14,), decay_fraction=0.15, warmup=500)


def test_the_largest_budget_is_the_long_run_and_the_others_branch_from_it():
    budgets = payoff.plan(1e11, (1e14, 2e15), decay_fraction=0.15, warmup=500)
    hparams = {"learning_rate": 1e-3, "lr_schedule": "wsd"}
    name, long_run, extra = payoff.budget_hparams("rtd", hparams, budgets, 1)
    assert (name, long_run["num_train_steps"], long_run["decay_steps"], extra) == ("rtd", 20000, 3000, [])
    name, branch, extra = payoff.budget_hparams("rtd", hparams, budgets, 0)
    assert (name, branch["num_train_steps"], branch["decay_steps"]) == ("rtd-decay-1e14", 1000, 150)
    assert extra == ["--init-from", "{models}/rtd/ckpt-850"]
    assert {k: v for k, v in branch.items() if k not in ("num_train_steps", "decay_steps")} == hparams


def test_bench_precision_reads_the_trainers_rate_from_its_log_lines():
    import bench_precision

    log = ("I1206 trainer.py:427] step 50/246 (epoch 0.08): loss 7.3696 gen 7.3696 disc 0.0000 gen_acc 0.042 "
           "disc_auc nan lr 1.00e-03 503.2 ex/s\nW1206 other line 3.0 ex/s\n"
           "I1206 trainer.py:427] step 60/246 (epoch 0.10): loss 7.2 gen 7.2 disc 0.0 gen_acc 0.05 "
           "disc_auc 0.51 lr 1.67e-04 728.5 ex/s\n")
    assert bench_precision.rates(log) == [503.2, 728.5]


def _point(flops, gain, std, objective="rtd", rows=4000, budget=None):
    return {"objective": objective, "train_rows": rows, "flops": flops, "budget_flops": budget or flops, "gain": gain,
            "pretrained_std": std, "random_init_std": std}


def test_a_clear_gain_is_two_points_beyond_two_standard_deviations():
    assert payoff.margin(_point(1e14, 0.05, 0.006)) == pytest.approx(0.05 - 2 * 0.006 * 2 ** 0.5)
    first, = payoff.trends([_point(1e14, 0.01, 0.0), _point(3e14, 0.03, 0.005), _point(1e15, 0.05, 0.0)])
    assert first.startswith("- rtd, 4,000 train rows: first clear gain at 1.0e+15 FLOPs (+5.0 points")


def test_the_trend_extrapolates_the_margin_to_the_bar_in_log_flops():
    # margin -4 points at 1e14, -2 at 1e15: +2 points per decade, reaching +2 at 1e17
    line, = payoff.trends([_point(1e14, -0.04, 0.0), _point(1e15, -0.02, 0.0)])
    assert "+2.0 points per tenfold compute over 2 budgets: it would reach +2 at ~1e+17 FLOPs" in line
    single, falling = payoff.trends([_point(1e14, -0.01, 0.0), _point(1e15, -0.03, 0.0),
                                     _point(1e14, 0.0, 0.01, objective="mlm")])  # sorted: mlm first
    assert single.startswith("- mlm, 4,000 train rows: no clear gain at 1.0e+14 FLOPs (margin -2.8)")
    assert single.endswith("one budget: no trend yet")
    assert "-2.0 points per tenfold compute over 2 budgets: it does not rise" in falling
    far, = payoff.trends([_point(1e14, -0.100, 0.0), _point(1e15, -0.095, 0.0)])  # +0.5 per decade: ~1e37
    assert far.endswith("+0.5 points per tenfold compute over 2 budgets: it would not reach +2 within 100x the "
                        "largest budget (a straight-line extrapolation)")


def test_the_two_stage_variant_spends_the_rest_of_the_largest_budget_after_its_first_stage():
    first = payoff.plan(1e11, (1e14, 1e15, 2e15), decay_fraction=0.15, warmup=500)[-2]
    assert first == payoff.Budget(1e15, 8500, 10000)
    hparams = {"learning_rate": 1e-3, "num_warmup_steps": 500}
    budget, flops, run, extra = payoff.variant_plan("rtd-from-mlm", hparams, 2e11, first, 1e11 * 10000, 2e15)
    assert budget == payoff.Budget(2e15, 0, 5000) and flops == pytest.approx(2e15)  # 1e15 + 5,000 x 2e11
    assert (run["num_train_steps"], run["decay_steps"], run["learning_rate"]) == (5000, 750, 1e-3)
    assert extra == ["--init-checkpoint", "{models}/mlm-decay-1e15/ckpt-10000", "--init-discriminator-from-generator"]
    with pytest.raises(SystemExit, match="variant rtd-from-mlm: 1000 steps after its first stage's 1.8e\\+15 FLOPs"):
        payoff.variant_plan("rtd-from-mlm", hparams, 2e11, first, 1.8e15, 2e15)
    assert payoff.VARIANTS["rtd-from-mlm"].hparams["generator_hidden_size"] == 1.0  # the generator fits the copy
    assert payoff.OBJECTIVES[payoff.VARIANTS["rtd-from-mlm"].start_from]["generator_hidden_size"] == 1.0


def test_the_variants_one_point_is_set_beside_the_objectives_at_its_budget():
    curve = [_point(1e15, 0.05, 0.0, "mlm"), _point(2e15, 0.052, 0.005, "mlm"), _point(2e15, -0.06, 0.03),
             _point(2e15, 0.06, 0.0, "mlm", rows=1000)]
    variant = _point(2.0004e15, 0.071, 0.004, "rtd-from-mlm", budget=2e15)
    line = [t for t in payoff.trends(curve + [variant]) if t.startswith("- rtd-from-mlm")]
    assert line == ["- rtd-from-mlm, 4,000 train rows: clear gain at 2.0e+15 FLOPs (+7.1 points, margin +6.0); at "
                    "the same budget mlm +5.2 points, margin +3.8, rtd -6.0 points, margin -14.5"]
    alone, = [t for t in payoff.trends([_point(2e15, 0.0, 0.01, "rtd-from-mlm", rows=1000)]) if "rtd-from-mlm" in t]
    assert alone.endswith("no clear gain at 2.0e+15 FLOPs (+0.0 points, margin -2.8); at the same budget nothing "
                          "else scored")
