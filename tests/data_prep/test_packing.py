"""Packing: the original's rules on hand-computed cases, and its invariants on real NSMC text."""
import collections
import random

import pytest

from data_prep import packing, tokenization, vocab_files

L = 32


class ScriptedRng:
    """Returns the given `random()` values in order (hand-computed cases need exact draws)."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)

    def randint(self, a, b):
        raise AssertionError("no short target expected")


def test_split_two_segments_by_half_target():
    # target 32: A's target is (32 - 3) // 2 = 14; draws: 0.5 (not single), then no coin needed
    sentences = [[1] * 6, [2] * 6, [3] * 6, [4] * 6]
    ex = packing.split_segments(sentences, 32, 32, ScriptedRng([0.5, 0.9]))
    # 6 -> A; 6+6=12 < 14 -> A; 12+6 >= 14, B empty, A < 14, coin 0.9 >= 0.5 -> B; then B
    assert ex == packing.Example([1] * 6 + [2] * 6, [3] * 6 + [4] * 6)


def test_split_coin_puts_overshooting_sentence_in_a():
    sentences = [[1] * 6, [2] * 6, [3] * 6]
    ex = packing.split_segments(sentences, 32, 32, ScriptedRng([0.5, 0.2]))
    assert ex == packing.Example([1] * 6 + [2] * 6 + [3] * 6, [])


def test_split_single_segment_and_trim():
    # draw < 0.1: one segment; A is cut to max_seq_length - 2 = 30
    ex = packing.split_segments([[7] * 20, [8] * 20], 32, 32, ScriptedRng([0.05]))
    assert ex == packing.Example([7] * 20 + [8] * 10, [], cut=10)


def test_split_trims_b_to_what_is_left():
    ex = packing.split_segments([[1] * 10, [2] * 40], 32, 32, ScriptedRng([0.5, 0.9]))
    assert ex.first == [1] * 10 and ex.second == [2] * (32 - 10 - 3) and ex.cut == 40 - (32 - 10 - 3)


def test_to_features_layout():
    ids, mask, seg = packing.to_features(packing.Example([10, 11], [12]), 8, cls_id=2, sep_id=3, pad_id=0)
    assert ids == [2, 10, 11, 3, 12, 3, 0, 0]
    assert mask == [1, 1, 1, 1, 1, 1, 0, 0]
    assert seg == [0, 0, 0, 0, 1, 1, 0, 0]
    ids, mask, seg = packing.to_features(packing.Example([10], []), 5, cls_id=2, sep_id=3, pad_id=0)
    assert (ids, mask, seg) == ([2, 10, 3, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0])


def test_rates_of_single_segment_and_short_targets():
    rng = random.Random(0)
    sentences = [[1] * 20] * 12  # more than A's target: B is empty only for single-segment draws
    singles = sum(not packing.split_segments(sentences, 128, 128, rng).second for _ in range(20000))
    assert 0.085 < singles / 20000 < 0.115
    shorts = sum(packing.next_target_length(128, rng) < 128 for _ in range(20000))
    assert 0.04 < shorts / 20000 < 0.06  # 5% draw a length in [5, 128]; 1/124 of those is 128


def test_document_rng_depends_on_seed_and_first_line_only():
    a = packing.document_rng(1, "첫 줄".encode()).random()
    assert a == packing.document_rng(1, "첫 줄".encode()).random()
    assert a != packing.document_rng(2, "첫 줄".encode()).random()
    assert a != packing.document_rng(1, "다른 줄".encode()).random()


@pytest.fixture(scope="module")
def documents(corpus_path, koelectra_vocab):
    """The first 60 movies of the bundled corpus, tokenised: [(first line, [ids per line])]."""
    docs = corpus_path.read_bytes().split(b"\n\n")[:60]
    tok = tokenization.load_tokenizer(str(koelectra_vocab), vocab_files.VocabSettings())
    out = []
    for doc in docs:
        lines = [line for line in doc.split(b"\n") if line.strip()]
        out.append((lines[0], tok.encode_batch([line.decode() for line in lines])))
    return out


def _made_of(segment, sentences):
    """Whether `segment` is some of this document's sentences in order, the last possibly cut."""
    reachable = {0}  # how much of `segment` some in-order choice of sentences can spell
    for s in sentences:
        for pos in list(reachable):
            if segment[pos : pos + len(s)] == s:
                reachable.add(pos + len(s))
            elif pos < len(segment) and segment[pos:] == s[: len(segment) - pos]:
                reachable.add(len(segment))
    return len(segment) in reachable


def test_invariants_on_real_text(documents):
    counts = collections.Counter()
    for first_line, sentences in documents:
        rng = packing.document_rng(7, first_line)
        for ex in packing.pack_document(sentences, L, rng):
            counts["examples"] += 1
            counts["single"] += not ex.second
            ids, mask, seg = packing.to_features(ex, L, cls_id=2, sep_id=3, pad_id=0)
            n = sum(mask)
            assert len(ids) == len(mask) == len(seg) == L
            assert ids[0] == 2 and ids[n - 1] == 3 and ids.count(3) == (2 if ex.second else 1)
            assert mask == [1] * n + [0] * (L - n) and ids[n:] == [0] * (L - n) and seg[n:] == [0] * (L - n)
            assert seg[: len(ex.first) + 2] == [0] * (len(ex.first) + 2)
            assert seg[len(ex.first) + 2 : n] == [1] * (n - len(ex.first) - 2)
            # each segment is made of this document's sentences: no cross-document segment
            assert ex.first and _made_of(ex.first, sentences)
            assert _made_of(ex.second, sentences)
    assert counts["examples"] > 200
    assert 0.05 < counts["single"] / counts["examples"] < 0.5


def test_any_document_order_gives_the_same_examples(documents):
    def examples(docs):
        return collections.Counter(
            (tuple(ex.first), tuple(ex.second))
            for first_line, sentences in docs
            for ex in packing.pack_document(sentences, L, packing.document_rng(3, first_line))
        )

    assert examples(documents) == examples(list(reversed(documents)))
    assert examples(documents) != collections.Counter(
        (tuple(ex.first), tuple(ex.second))
        for first_line, sentences in documents
        for ex in packing.pack_document(sentences, L, packing.document_rng(4, first_line))
    )
