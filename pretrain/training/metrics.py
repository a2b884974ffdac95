"""Pretraining metrics from summed per-step counts (see `rtd.RtdOutputs`).

Every quantity is a sum over tokens, so replicas and steps combine by addition: the
metrics are streaming and distribution-safe. AUC comes from histograms of the
discriminator's probability (`rtd.AUC_BINS` bins; ties within a bin count half).
"""
from __future__ import annotations

import math

import numpy as np

# A step's loss above this multiple of the uniform-guess loss means the run has diverged (see divergence_ceiling).
DIVERGENCE_FACTOR = 4.0


def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a replaced token > score of an original one), bins in ascending score."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    total = pos.sum() * neg.sum()
    if total == 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float((pos * neg_below).sum() + 0.5 * (pos * neg).sum()) / total


def base_rate_loss(replaced_fraction: float) -> float:
    """The discriminator loss of a model that ignores its input and predicts the replaced fraction.

    Binary entropy in nats. A discriminator loss at this value means it has learnt nothing from the
    context (the "base-rate" solution, e.g. 0.39 at 13.5% replaced); the gap below it is what it learnt.
    """
    p = float(replaced_fraction)
    if not 0.0 < p < 1.0:
        return 0.0 if p in (0.0, 1.0) else float("nan")
    return float(-(p * np.log(p) + (1.0 - p) * np.log1p(-p)))


def uniform_guess_loss(vocab_size: int, gen_weight: float, disc_weight: float) -> float:
    """The total loss of a model that knows nothing: uniform over the V ids, one half for replaced/original."""
    return gen_weight * math.log(vocab_size) + disc_weight * math.log(2.0)


def divergence_ceiling(vocab_size: int, gen_weight: float, disc_weight: float) -> float:
    """The total loss above which a run has diverged: `DIVERGENCE_FACTOR` x `uniform_guess_loss`.

    Fixed by the task, not by the run's history, so it holds from the first step and after a
    resume. Initial weights (stddev 0.02) give near-uniform predictions, so a run starts within a
    few per cent of the uniform-guess loss and training only lowers it; a loss several times
    higher means confidently wrong predictions, which only a blown-up update gives (a finite
    explosion at learning_rate 300 was 6e9x at step 2). Healthy tiny runs at learning rates up
    to 1e-2 stayed below 1.001x at every step, batch 8 (docs/pretraining.md).
    """
    return DIVERGENCE_FACTOR * uniform_guess_loss(vocab_size, gen_weight, disc_weight)


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def summarize(totals: dict[str, np.ndarray], gen_weight: float, disc_weight: float) -> dict[str, float]:
    """Loss and metrics from summed `RtdOutputs` fields (as numpy)."""
    mlm = _ratio(totals["mlm_loss_sum"], totals["mlm_count"])
    disc = _ratio(totals["disc_loss_sum"], totals["disc_count"])
    replaced = _ratio(totals["replaced"], totals["disc_count"])
    return {
        "loss": gen_weight * mlm + disc_weight * disc,
        "generator_loss": mlm,
        "discriminator_loss": disc,
        "generator_accuracy": _ratio(totals["mlm_correct"], totals["mlm_count"]),
        "discriminator_accuracy": _ratio(totals["disc_correct"], totals["disc_count"]),
        "discriminator_precision": _ratio(totals["true_pos"], totals["pred_pos"]),
        "discriminator_recall": _ratio(totals["true_pos"], totals["replaced"]),
        "discriminator_auc": auc_from_histograms(totals["pos_hist"], totals["neg_hist"]),
        "replaced_fraction": replaced,
        "discriminator_base_rate_loss": base_rate_loss(replaced),
        "masked_tokens": float(totals["mlm_count"]),
        "tokens": float(totals["disc_count"]),
    }
