"""The per-line rules: KcELECTRA parity on real NSMC text, and the default preset's cases."""
import random

import pytest

from data_prep.normalize import KC_ALLOWED, clean_line, clean_lines, clean_text

from shared_paths import KCELECTRA_CLEAN, RAW_DUMP, load_peer

PEER = KCELECTRA_CLEAN


@pytest.fixture(scope="module")
def peer():
    """KcELECTRA's published clean(), imported by path: a peer, not project code."""
    return load_peer(PEER, "kcelectra_clean_peer")


@pytest.fixture(scope="module")
def corpus_lines(corpus_path):
    data = corpus_path.read_bytes()
    return data.decode("utf-8").split("\n")[:-1]


def test_kcelectra_matches_peer_on_bundled_corpus(peer, corpus_lines):
    expected = [peer.clean(line) for line in corpus_lines]
    got = clean_lines(corpus_lines, "kcelectra")
    assert len(got) == len(corpus_lines) == 15_535
    mismatches = [(i, e, g) for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    assert mismatches == []
    assert sum(e != line for e, line in zip(expected, corpus_lines)) == 1301  # the rules did work


def test_kcelectra_matches_peer_on_adversarial_strings(peer):
    """Random strings over the characters where the rules meet: every run boundary."""
    pieces = list(" \t\r\x0b\x0c\x1c\x1f\x85\xa0\u3000ㅋㅎ가나aA0_.!?/:%~％·∼()😂❤\ufe0f\u200d#*\u20e3漢é\ufffd")
    pieces += ["ㅋㅋㅋㅋ", "http://", "https://www.", ".com", ".co.kr/a?b=1", "1️⃣", "👨‍👩‍👧"]
    rng = random.Random(3)
    cases = ["", " ", "ㅋ" * 9, "a" * 4 + "b" * 3] + [
        "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25))) for _ in range(5000)
    ]
    assert [clean_line(c, "kcelectra") for c in cases] == [peer.clean(c) for c in cases]
    assert clean_lines(cases[4:], "kcelectra") == [peer.clean(c) for c in cases[4:]]


def test_emoji_pass_cannot_change_allowlisted_text():
    """Why the peer's `emoji.replace_emoji` may be skipped: walking the emoji package's own
    search tree through allowed characters only never reaches a complete emoji."""
    import re

    from emoji.tokenizer import get_search_tree

    allowed = re.compile(f"[{KC_ALLOWED}]")
    reachable = []

    def walk(node, path):
        if "data" in node and path:
            reachable.append(path)
        for ch, sub in node.items():
            if ch != "data" and allowed.fullmatch(ch):
                walk(sub, path + ch)

    walk(get_search_tree(), "")
    assert reachable == []
    # The tokenizer's other edits (dropping U+FE0E/U+FE0F, ZWJ joins) need characters the
    # allowlist removes.
    assert not allowed.fullmatch("\ufe0e") and not allowed.fullmatch("\ufe0f") and not allowed.fullmatch("\u200d")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("\u1100\u1161\u11a8 좋아요 👍👍", "각 좋아요 👍👍"),  # NFC: jamo compose; emoji kept
        ("ㅋㅋㅋㅋㅋㅋ 진짜!!!!!! 😂😂😂😂😂", "ㅋㅋ 진짜!! 😂😂"),  # repeats cut to two
        ("관객 1000000명 돌파", "관객 1000000명 돌파"),  # digits are not repeats
        ("링크 https://movie.naver.com/a?b=1 참고", "링크 참고"),
        ("www.example.co.kr 여기", "여기"),
        ("문의 someone.x@mail.co.kr 로", "문의 로"),
        ("  여러\t\t칸   공백\u3000끝  ", "여러 칸 공백 끝"),
        ("zero\u200bwidth\ufeff soft\u00adhyphen", "zerowidth softhyphen"),
        ("가족 👨\u200d👩\u200d👧 ❤\ufe0f", "가족 👨\u200d👩\u200d👧 ❤\ufe0f"),  # ZWJ and VS16 stay
        ("제어\x00문자\x07", "제어 문자"),
        ("줄 안의\r캐리지리턴", "줄 안의 캐리지리턴"),
        ("", ""),
    ],
)
def test_default_preset_cases(raw, expected):
    assert clean_line(raw, "default") == expected


@pytest.mark.parametrize("preset", ["kcelectra", "default"])
def test_block_equals_line_by_line(preset, corpus_lines):
    """Cleaning a block is exactly cleaning each line: no rule crosses a line end."""
    lines = corpus_lines[:3000]
    assert clean_lines(lines, preset) == [clean_line(line, preset) for line in lines]
    assert clean_text("\n".join(lines), preset).count("\n") == len(lines) - 1


def test_kcelectra_known_outputs():
    assert clean_line("ㅋㅋㅋㅋㅋ 최고👍👍 http://bit.ly/abc 강추!!!!", "kcelectra") == "ㅋㅋ 최고 강추!!!!"
    assert clean_line("aaaa1111 漢字 ___", "kcelectra") == "aa11 ___"


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="unknown preset 'bert'"):
        clean_line("x", "bert")


@pytest.mark.slow
def test_kcelectra_matches_peer_on_whole_nsmc_dump(peer):
    """All 655,973 lines of the raw NSMC dump (121 with a bare \\r), block by block."""
    import gzip

    with gzip.open(RAW_DUMP, "rb") as fh:
        lines = fh.read().decode("utf-8").split("\n")[:-1]
    assert len(lines) == 655_973 and sum("\r" in line for line in lines) == 121
    for start in range(0, len(lines), 20_000):
        block = lines[start : start + 20_000]
        assert clean_lines(block, "kcelectra") == [peer.clean(line) for line in block], start
