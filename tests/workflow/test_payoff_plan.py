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
