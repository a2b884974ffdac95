"""Packing tokenised sentences into pretraining examples, with the original ELECTRA's rules.

The rules of google-research ELECTRA's `ExampleBuilder`, unchanged:

- sentences (lines) of one document are collected until they reach the target length
  (`max_seq_length`), then become one example `[CLS] A [SEP] B [SEP]`; what is left at the
  end of a document becomes a (shorter) example of its own, so documents never mix;
- 10% of examples have one segment only (`[CLS] A [SEP]`, as in classification tasks);
  otherwise a sentence goes to segment A while A is empty or stays under
  `(target - 3) // 2`, and with probability 1/2 when it would overshoot and B is still
  empty; the rest goes to B;
- A is cut to `max_seq_length - 2` tokens and B to what is left after `[CLS]`/`[SEP]`s;
- after each example, 5% of the time the next target is a random length in
  `[5, max_seq_length]` (short examples, as the original).

One change for determinism: the original draws from one global `random` stream, so the
output depends on the order in which documents reach each process. Here each document
has its own `random.Random`, seeded from the run's seed and the document's first line,
and starts with a target drawn by the same 5% rule. The examples of a document then
depend only on the document and the seed, so any split of the corpus over processes,
shards or Beam workers gives the same examples.
"""
from __future__ import annotations

import hashlib
import random
from typing import Iterable, Iterator, NamedTuple, Sequence

SINGLE_SEGMENT_PROB = 0.1
SHORT_TARGET_PROB = 0.05
MIN_SHORT_TARGET = 5
MIN_SEQ_LENGTH = 8  # the shortest `max_seq_length` a stage accepts: room for [CLS] A [SEP] B [SEP]


class Example(NamedTuple):
    """Token ids of the two segments, without `[CLS]`/`[SEP]` (`second` may be empty), and how
    many tokens of its sentences the trim cut off (the original drops them silently; we count)."""

    first: list[int]
    second: list[int]
    cut: int = 0


def document_rng(seed: int, first_line: bytes) -> random.Random:
    """The random stream of one document: a function of the seed and the document's first line
    (its line ending ignored, so a last line without a newline packs the same)."""
    digest = hashlib.blake2b(first_line.rstrip(b"\n"), digest_size=8, key=str(seed).encode()).digest()
    return random.Random(int.from_bytes(digest, "little"))


def next_target_length(max_seq_length: int, rng: random.Random) -> int:
    if rng.random() < SHORT_TARGET_PROB:
        return rng.randint(MIN_SHORT_TARGET, max_seq_length)
    return max_seq_length


def split_segments(
    sentences: Sequence[Sequence[int]], target_length: int, max_seq_length: int, rng: random.Random
) -> Example:
    """Divide collected sentences into segments A and B and trim them (the original's rules)."""
    if rng.random() < SINGLE_SEGMENT_PROB:
        first_target = 100000
    else:
        first_target = (target_length - 3) // 2  # room for [CLS] A [SEP] B [SEP]
    first: list[int] = []
    second: list[int] = []
    for sentence in sentences:
        if (
            not first
            or len(first) + len(sentence) < first_target
            or (not second and len(first) < first_target and rng.random() < 0.5)
        ):
            first.extend(sentence)
        else:
            second.extend(sentence)
    total = len(first) + len(second)
    first = first[: max_seq_length - 2]
    second = second[: max(0, max_seq_length - len(first) - 3)]
    return Example(first, second, total - len(first) - len(second))


def pack_document(sentences: Iterable[Sequence[int]], max_seq_length: int, rng: random.Random) -> Iterator[Example]:
    """Examples of one document, built lazily (memory: one example's sentences)."""
    target = next_target_length(max_seq_length, rng)
    current: list[Sequence[int]] = []
    length = 0
    for sentence in sentences:
        if not sentence:
            continue
        current.append(sentence)
        length += len(sentence)
        if length >= target:
            yield split_segments(current, target, max_seq_length, rng)
            current, length = [], 0
            target = next_target_length(max_seq_length, rng)
    if current:
        yield split_segments(current, target, max_seq_length, rng)


def to_features(
    example: Example, max_seq_length: int, cls_id: int, sep_id: int, pad_id: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """`input_ids`, `input_mask`, `segment_ids` of one example, padded to `max_seq_length`."""
    input_ids = [cls_id, *example.first, sep_id]
    segment_ids = [0] * len(input_ids)
    if example.second:
        input_ids += [*example.second, sep_id]
        segment_ids += [1] * (len(example.second) + 1)
    pad = max_seq_length - len(input_ids)
    return input_ids + [pad_id] * pad, [1] * len(input_ids) + [0] * pad, segment_ids + [0] * pad


def num_tokens(example: Example) -> int:
    """Real tokens of an example: its segments plus `[CLS]` and one `[SEP]` per segment."""
    return len(example.first) + len(example.second) + (3 if example.second else 2)


def document_features(
    sentences: Iterable[list[int]],
    first_line: bytes,
    max_seq_length: int,
    seed: int,
    cls_id: int,
    sep_id: int,
    pad_id: int = 0,
) -> Iterator[tuple[tuple[list[int], list[int], list[int]], int, int]]:
    """One document's examples as (features, real-token count, tokens cut), packed with its own
    random stream: the single-machine builder and the Beam pipeline both call this."""
    rng = document_rng(seed, first_line)
    for example in pack_document(sentences, max_seq_length, rng):
        yield to_features(example, max_seq_length, cls_id, sep_id, pad_id), num_tokens(example), example.cut
