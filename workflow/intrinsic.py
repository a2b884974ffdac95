"""What pretraining taught, on held-out text, next to what a model that learned nothing would score.

Two measurements on exported Hugging Face folders that need no fine-tuning:
- the generator's top-1 on masked positions (every chosen position replaced by [MASK], so no
  position can be answered by copying), against always answering the most frequent token of
  other rows (the unigram baseline: where a generator stalls first);
- the discriminator's AUC at telling the generator's own replacements from original tokens,
  against the best scorer that sees only the token itself (its replaced rate on other rows).
A model above both baselines has learned something about context; at them, only frequencies.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from workflow.finetune import collate

MASK_RATE = 0.15  # the paper's share of masked positions


class Intrinsic(NamedTuple):
    heldout_generator_accuracy: float
    unigram_baseline_accuracy: float
    masked_positions: int
    heldout_discriminator_auc: float | None  # None: no discriminator (an MLM-only run)
    token_only_auc: float | None
    replaced_share: float | None  # of real tokens the generator's samples changed

    def to_dict(self) -> dict:
        return self._asdict()


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average rank over each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def choose_masks(ids: Sequence[list[int]], special: set[int], seed: int, rate: float = MASK_RATE) -> list[np.ndarray]:
    """Positions to mask in each row: round(rate x its maskable tokens), at least one, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    out = []
    for row in ids:
        candidates = np.array([i for i, t in enumerate(row) if t not in special], dtype=np.int64)
        k = min(len(candidates), max(1, int(round(rate * len(candidates))))) if len(candidates) else 0
        out.append(np.sort(rng.choice(candidates, size=k, replace=False)) if k else candidates)
    return out


def unigram_baseline(train_ids: Sequence[list[int]], test_ids: Sequence[list[int]], masks: Sequence[np.ndarray],
                     special: set[int]) -> float:
    """Top-1 of always answering the train rows' most frequent non-special token at the masked positions."""
    counts: dict[int, int] = {}
    for row in train_ids:
        for t in row:
            if t not in special:
                counts[t] = counts.get(t, 0) + 1
    top = max(counts, key=lambda t: (counts[t], -t))
    originals = np.concatenate([np.asarray(row)[m] for row, m in zip(test_ids, masks)])
    return float(np.mean(originals == top))


def _masked_logits(generator, ids, masks, mask_id: int, pad_id: int, batch_size: int):
    """Yield (first row, [K, V] float32 logits at the batch's masked positions in row order, their row
    offsets) with those positions [MASK]ed; the head runs on the masked positions only, not [B, L, V]."""
    import torch

    generator.eval()
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            chunk = masks[start : start + batch_size]
            rows = []
            for row, m in zip(ids[start : start + batch_size], chunk):
                masked = list(row)
                for p in m:
                    masked[p] = mask_id
                rows.append(masked)
            input_ids, attention = collate(rows, pad_id)
            hidden = generator.electra(input_ids=input_ids, attention_mask=attention).last_hidden_state  # [B, L, H]
            which = torch.as_tensor(np.concatenate([np.full(len(m), i) for i, m in enumerate(chunk)]), dtype=torch.long)
            where = torch.as_tensor(np.concatenate([np.asarray(m, dtype=np.int64) for m in chunk]), dtype=torch.long)
            logits = generator.generator_lm_head(generator.generator_predictions(hidden[which, where]))  # [K, V]
            yield start, logits.float(), np.r_[0, np.cumsum([len(m) for m in chunk])]


def generator_top1(generator, ids, masks, mask_id: int, pad_id: int, batch_size: int = 64) -> float:
    correct = total = 0
    for start, logits, offsets in _masked_logits(generator, ids, masks, mask_id, pad_id, batch_size):
        originals = np.concatenate([np.asarray(ids[start + i])[m] for i, m in enumerate(masks[start : start + batch_size])])
        correct += int((logits.argmax(-1).numpy() == originals).sum())
        total += int(offsets[-1])
    return correct / max(total, 1)


def corrupt(generator, ids, masks, mask_id: int, pad_id: int, seed: int, batch_size: int = 64) -> list[np.ndarray]:
    """Each row with its masked positions replaced by a token sampled from the generator (temperature 1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = [np.asarray(row, dtype=np.int64).copy() for row in ids]
    for start, logits, offsets in _masked_logits(generator, ids, masks, mask_id, pad_id, batch_size):
        if offsets[-1] == 0:
            continue
        sampled = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0].numpy()
        for i, m in enumerate(masks[start : start + batch_size]):
            out[start + i][m] = sampled[offsets[i] : offsets[i + 1]]
    return out


def discriminator_logits(discriminator, rows: Sequence[np.ndarray], pad_id: int, batch_size: int = 64) -> list[np.ndarray]:
    import torch

    discriminator.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = [r.tolist() for r in rows[start : start + batch_size]]
            input_ids, attention = collate(chunk, pad_id)
            logits = discriminator(input_ids=input_ids, attention_mask=attention).logits  # [B, L]
            out.extend(logits[i, : len(r)].double().numpy() for i, r in enumerate(chunk))
    return out


def _replacement_labels(original, corrupted, special: set[int]):
    """(observed token, replaced?) at every non-special position of every row."""
    tokens, labels = [], []
    for o, c in zip(original, corrupted):
        keep = np.array([t not in special for t in o], dtype=bool)
        tokens.append(np.asarray(c)[keep])
        labels.append((np.asarray(o) != np.asarray(c))[keep])
    return np.concatenate(tokens), np.concatenate(labels)


def token_only_scores(train_tokens: np.ndarray, train_labels: np.ndarray, test_tokens: np.ndarray,
                      vocab_size: int) -> np.ndarray:
    """Each test token's replaced rate among the train rows' tokens (add-one smoothed): the best scorer
    that sees a token but not its context."""
    seen = np.bincount(train_tokens, minlength=vocab_size).astype(np.float64)
    replaced = np.bincount(train_tokens, weights=train_labels.astype(np.float64), minlength=vocab_size)
    return ((replaced + 1.0) / (seen + 2.0))[test_tokens]


def measure(generator, discriminator, train_ids, test_ids, special: set[int], mask_id: int, pad_id: int,
            vocab_size: int, seed: int = 0) -> Intrinsic:
    """Both measurements on `test_ids`, baselines estimated on `train_ids` (other rows, never the test's)."""
    masks = choose_masks(test_ids, special, seed)
    top1 = generator_top1(generator, test_ids, masks, mask_id, pad_id)
    baseline = unigram_baseline(train_ids, test_ids, masks, special)
    positions = int(sum(len(m) for m in masks))
    if discriminator is None:
        return Intrinsic(top1, baseline, positions, None, None, None)
    corrupted = corrupt(generator, test_ids, masks, mask_id, pad_id, seed)
    logits = discriminator_logits(discriminator, corrupted, pad_id)
    keep = [np.array([t not in special for t in row], dtype=bool) for row in test_ids]
    scores = np.concatenate([lg[k] for lg, k in zip(logits, keep)])
    test_tokens, labels = _replacement_labels(test_ids, corrupted, special)
    train_masks = choose_masks(train_ids, special, seed + 1)
    train_tokens, train_labels = _replacement_labels(
        train_ids, corrupt(generator, train_ids, train_masks, mask_id, pad_id, seed + 1), special)
    token_only = token_only_scores(train_tokens, train_labels, test_tokens, vocab_size)
    return Intrinsic(top1, baseline, positions, auc(scores, labels), auc(token_only, labels), float(labels.mean()))
