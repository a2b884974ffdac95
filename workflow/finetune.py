"""Classifiers on labelled rows, from an exported encoder: fine-tuning it (plain, layer-wise rate decay,
linear probe then fine-tune, or with its top layer re-initialised), or a linear probe on its frozen features. PyTorch on the CPU; `workflow.probe` runs the protocol around them.

Both are deterministic given their seed: batch order comes from `batch_order(seed)` alone and the
linear probe is full-batch L-BFGS, so a rerun reproduces every accuracy.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from foundation import console
from foundation.errors import UserError


def batch_order(num_rows: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Row indices of every training batch, shuffled per epoch from `seed` alone."""
    rng = np.random.default_rng(seed)
    return [
        perm[i : i + batch_size].tolist()
        for perm in (rng.permutation(num_rows) for _ in range(epochs))
        for i in range(0, num_rows, batch_size)
    ]


def collate(ids: Sequence[list[int]], pad_id: int):
    """Pad a batch to its longest row (not to max_seq_length: NSMC rows are short)."""
    import torch

    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)  # [B, L]
    mask = torch.zeros((len(ids), width), dtype=torch.long)  # [B, L]
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids, mask


PROTOCOLS = ("plain", "llrd", "lpft", "reinit")
# ELECTRA's fine-tuning: layer-wise rate decay 0.8 for Small (0.9 for Base/Large in its paper's appendix)
LAYER_DECAY = 0.8


def layer_depth(name: str, num_layers: int) -> int:
    """A parameter's depth as ELECTRA's fine-tuning counts it: embeddings 0, encoder layer i at i + 1, the task
    head at num_layers + 2 (ELECTRA's `_get_layer_lrs`)."""
    if name.startswith("electra.encoder.layer."):
        return int(name.split(".")[3]) + 1
    if name.startswith("electra.embeddings"):  # embeddings and embeddings_project
        return 0
    return num_layers + 2


def layer_rates(model, learning_rate: float, decay: float) -> list[dict]:
    """Torch parameter groups with layer-wise decayed rates: `learning_rate * decay ** (num_layers + 2 - depth)`."""
    num_layers = model.config.num_hidden_layers
    groups: dict[int, list] = {}
    for name, param in model.named_parameters():
        groups.setdefault(layer_depth(name, num_layers), []).append(param)
    return [{"params": params, "lr": learning_rate * decay ** (num_layers + 2 - depth)}
            for depth, params in sorted(groups.items())]


def reinit_top_layer(model, seed: int) -> None:
    """Re-initialise the last encoder layer as `from_pretrained` initialises new weights (its top layer is the
    most specific to the pretraining task; re-initialising it often helps small-data fine-tuning)."""
    import torch

    torch.manual_seed(seed)
    model.electra.encoder.layer[-1].apply(model._init_weights)


def head_only(model) -> list:
    """The task head's parameters (everything outside `model.electra`), for the linear-probe stage."""
    return [p for name, p in model.named_parameters() if not name.startswith("electra.")]


def fine_tune(model, ids: list[list[int]], labels: list[int], pad_id: int, config, protocol: str = "plain") -> float:
    """Train `model` in place with `protocol` (AdamW, warmup + linear decay); returns the last epoch's mean loss.

    plain: every weight at `learning_rate`; llrd: layer-wise decayed rates (`layer_rates`, `layer_decay`);
    lpft: the head alone first (`lp_epochs` at `lp_learning_rate`, the encoder frozen), then plain;
    reinit: the top encoder layer re-initialised (`reinit_top_layer`), then plain.
    `config` carries learning_rate, epochs, batch_size, warmup_fraction, seed, layer_decay, lp_epochs and
    lp_learning_rate (a `ProbeConfig`).
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"probe protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "reinit":
        reinit_top_layer(model, config.seed)
    if protocol == "lpft":
        model.electra.requires_grad_(False)  # frozen: no gradients computed, none applied
        _train(model, ids, labels, pad_id, [{"params": head_only(model), "lr": config.lp_learning_rate}],
               config.lp_epochs, config, "probe linear stage")
        model.electra.requires_grad_(True)
    groups = (layer_rates(model, config.learning_rate, config.layer_decay) if protocol == "llrd"
              else [{"params": list(model.parameters()), "lr": config.learning_rate}])
    return _train(model, ids, labels, pad_id, groups, config.epochs, config, "probe fine-tune")


def _train(model, ids: list[list[int]], labels: list[int], pad_id: int, groups: list[dict], epochs: int, config,
           desc: str) -> float:
    """`epochs` over the rows updating only `groups` (each at its own peak rate); the last epoch's mean loss."""
    import torch

    batches = batch_order(len(ids), config.batch_size, epochs, config.seed)
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    warmup = int(config.warmup_fraction * len(batches))
    params = [p for g in groups for p in g["params"]]
    # fused: one kernel over all tensors, 7x faster than the default on the dense embedding grads
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=0.01, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (step + 1) / warmup if step < warmup else max(0.0, (len(batches) - step) / (len(batches) - warmup)),
    )
    label_tensor = torch.tensor(labels, dtype=torch.long)
    model.train()
    last_epoch: list[float] = []
    with console.progress(batches, desc=desc, unit="step", leave=False) as bar:
        for step, rows in enumerate(bar):
            input_ids, mask = collate([ids[r] for r in rows], pad_id)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=label_tensor[rows]).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            if step >= len(batches) - steps_per_epoch:
                last_epoch.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    if not math.isfinite(sum(last_epoch)):
        raise UserError(f"probe fine-tuning at learning rate {config.learning_rate:g} diverged (non-finite loss); "
                        "lower --learning-rate")
    return sum(last_epoch) / len(last_epoch)


def predict(model, ids: list[list[int]], pad_id: int, batch_size: int) -> np.ndarray:
    """Predicted labels [T] of every row, in row order (dropout off)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            input_ids, mask = collate(ids[start : start + batch_size], pad_id)
            out.append(model(input_ids=input_ids, attention_mask=mask).logits.argmax(-1).numpy())  # [B]
    return np.concatenate(out)


def mean_pooled_features(encoder, ids: list[list[int]], pad_id: int, batch_size: int = 128) -> np.ndarray:
    """[T, H] float64: the last layer's hidden states averaged over each row's real tokens.

    `encoder` is an `ElectraModel` (the body of any exported folder); dropout off.
    """
    import torch

    encoder.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            input_ids, mask = collate(ids[start : start + batch_size], pad_id)
            hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state  # [B, L, H]
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            out.append(((hidden * weights).sum(1) / weights.sum(1)).double().numpy())
    return np.concatenate(out)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 200):
    """(w [H], b) of L2-regularised logistic regression, full-batch L-BFGS on standardised `x`."""
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy(), float(b.detach())


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every feature by the train rows' mean and spread (random-init features are tiny otherwise)."""
    mean, std = train.mean(0), train.std(0) + 1e-8
    return [(a - mean) / std for a in (train, *others)]


def logistic_accuracy(w: np.ndarray, b: float, x: np.ndarray, y: Sequence[int]) -> float:
    return float(np.mean(((x @ w + b) > 0).astype(int) == np.asarray(y)))
