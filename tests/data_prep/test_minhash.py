"""MinHash/LSH near-duplicate detection on constructed near-duplicates of real NSMC reviews."""
import pytest

from data_prep import minhash
from foundation.errors import UserError

CONFIG = minhash.MinHashConfig()


@pytest.fixture(scope="module")
def long_reviews(corpus_path):
    """Distinct real reviews long enough (>= 100 chars) that a small edit keeps Jaccard near 0.9."""
    seen, out = set(), []
    for raw in corpus_path.read_bytes().split(b"\n"):
        line = raw.decode("utf-8").strip()
        if len(line) >= 100 and line not in seen:
            seen.add(line)
            out.append(line)
    return out[:80]


def test_shingles_and_exact_jaccard():
    assert minhash.shingles("가나다라마바", 5) == {"가나다라마", "나다라마바"}
    assert minhash.shingles("  짧은   글 ", 5) == {"짧은 글"}
    assert minhash.jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)


def test_signature_estimates_jaccard(long_reviews):
    hasher = minhash.MinHasher(CONFIG)
    a = long_reviews[0]
    b = a[: len(a) // 2] + " 진짜 " + a[len(a) // 2 :]
    exact = minhash.jaccard(minhash.shingles(a, 5), minhash.shingles(b, 5))
    estimate = minhash.similarity(hasher.signature(a), hasher.signature(b))
    assert abs(exact - estimate) < 0.12  # std of the estimate at P=128 is ~0.04
    assert minhash.similarity(hasher.signature(a), hasher.signature(a)) == 1.0
    sig = hasher.signature(a)
    assert sig.shape == (128,) and sig.dtype.name == "uint32"
    assert (minhash.MinHasher(CONFIG).signature(a) == sig).all()  # deterministic across instances


def test_candidate_probability_matches_docstring():
    assert minhash.candidate_probability(0.9, 16, 8) == pytest.approx(1.00, abs=0.005)
    assert minhash.candidate_probability(0.8, 16, 8) == pytest.approx(0.95, abs=0.005)
    assert minhash.candidate_probability(0.6, 16, 8) == pytest.approx(0.24, abs=0.005)
    assert minhash.candidate_probability(0.4, 16, 8) == pytest.approx(0.01, abs=0.01)


def test_finds_constructed_near_duplicates_and_keeps_the_first(long_reviews):
    originals = long_reviews[:40]
    items = [((0, i), text) for i, text in enumerate(originals)]
    # Near-duplicates placed after all originals: an appended laugh, one character changed.
    edited = {}
    for j, text in enumerate(originals[:10]):
        edited[(1, j)] = text + " ㅋㅋ" if j % 2 else text[:50] + "!" + text[51:]
    for key, text in edited.items():
        sim = minhash.jaccard(minhash.shingles(text, 5), minhash.shingles(originals[key[1]], 5))
        assert sim >= 0.85, (text, sim)
    items += list(edited.items())
    removed = minhash.find_near_duplicates(items, CONFIG)
    assert removed == set(edited)  # every copy removed, every original (the earlier one) kept


def test_dissimilar_texts_are_kept(long_reviews):
    items = [((0, i), t) for i, t in enumerate(long_reviews)]
    assert minhash.find_near_duplicates(items, CONFIG) == set()


def test_rule_is_per_bucket_order_not_input_order(long_reviews):
    a = long_reviews[0]
    b = a + " ㅋㅋ"
    assert minhash.find_near_duplicates([((5,), b), ((2,), a)], CONFIG) == {(5,)}
    assert minhash.find_near_duplicates([((2,), b), ((5,), a)], CONFIG) == {(5,)}


def test_band_keys_split_the_signature():
    hasher = minhash.MinHasher(CONFIG)
    keys = minhash.band_keys(hasher.signature("아주 재미있는 영화였습니다"), CONFIG)
    assert len(keys) == 16 and len(set(keys)) == 16
    assert all(len(k) == 1 + 8 * 4 for k in keys)


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0.0}, {"threshold": 1.5}, {"shingle": 0}, {"num_perm": 100, "bands": 16}],
)
def test_bad_config_is_a_user_error(kwargs):
    with pytest.raises(UserError):
        minhash.MinHashConfig(**kwargs)
