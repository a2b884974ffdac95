"""Held-out rows kept out of the pretraining text: the normalised key and the streaming filter."""
from workflow.labelled_rows import Exclusion, HeldoutFilter, Split, heldout_keys, text_key


def test_text_key_sees_through_what_cleaning_changes():
    assert text_key("정말 보면 안되는 영화  후회 함 !") == text_key("정말 보면 안되는 영화 후회 함!") == "정말보면안되는영화후회함"
    assert text_key("ＡＢＣ 최고!!") == "abc최고"  # NFKC folds full-width letters, case is ignored
    assert text_key("ㅡ_ㅡ") == text_key("ㅡㅡ") != "" and text_key("...!!") == ""
    assert text_key("최고") != text_key("최고다")


def test_filter_drops_exactly_the_heldout_reviews_and_counts_them():
    test = Split(["나랑 장난하나 이게왜6점", "어울리지도 않고 재미도 없고", "..."], [0, 0, 1])
    dev = Split(["재밌어요"], [1])
    keys = heldout_keys([test, dev])
    assert len(keys) == 3  # "..." has no letters: it matches nothing
    corpus = ["나랑  장난하나 이게왜6점!!", "좋은 영화", "", "재밌어요 ", "재밌어요?", "...", "재밌어요 진짜"]
    drop = HeldoutFilter(keys)
    assert list(drop(corpus)) == ["좋은 영화", "", "...", "재밌어요 진짜"]
    assert drop.result() == Exclusion(lines=7, dropped=3, heldout_texts=3, heldout_found=2)
