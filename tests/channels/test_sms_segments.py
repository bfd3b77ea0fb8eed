"""SMS segment counting (providers.md 4 and the 6.6 table) and splitting of long bodies."""
import unicodedata

import pytest

from gateway.channels.sms_segments import SegmentInfo, count_segments, safe_boundary, split_text

# Every row of providers.md 6.6, as (input, encoding, units, segments).
TABLE = [
    ("Hello", "GSM-7", 5, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),
    ("€" * 81, "GSM-7", 162, 2),
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # the ESC pair cannot straddle a boundary
    ("é" * 70, "GSM-7", 70, 1),
    ("ç", "UCS-2", 1, 1),
    ("x" * 70 + "ç", "UCS-2", 71, 2),
    ("😀" * 35, "UCS-2", 70, 1),
    ("😀" * 36, "UCS-2", 72, 2),
]


@pytest.mark.parametrize("text,encoding,units,segments", TABLE,
                         ids=[f"{len(t)}x{t[:1]!r}" for t, *_ in TABLE])
def test_segment_table(text, encoding, units, segments):
    assert count_segments(text) == SegmentInfo(encoding, units, segments)


def test_surrogate_pair_is_not_split_across_ucs2_segments():
    # 66 units + one emoji (2 units) would straddle the 67-unit boundary, so the emoji opens
    # segment 2: 134 units fit ceil(134 / 67) = 2 segments on paper but need 3.
    assert count_segments("ç" * 66 + "😀" + "x" * 65) == SegmentInfo("UCS-2", 133, 2)
    assert count_segments("ç" * 66 + "😀" + "x" * 66) == SegmentInfo("UCS-2", 134, 3)


def test_extension_characters_and_curly_quotes():
    assert count_segments("{[~]}|^\\\f").units == 18
    assert count_segments("It’s").encoding == "UCS-2"
    assert count_segments("").segments == 1


def test_short_text_is_one_part():
    assert split_text("Hello", 1600) == ["Hello"]
    assert split_text("", 1600) == [""]


def test_splits_at_paragraph_then_sentence_then_word():
    text = "First paragraph is here.\n\nSecond one is longer. It has two sentences and words"
    assert split_text(text, 50) == ["First paragraph is here.", "Second one is longer.",
                                    "It has two sentences and words"]
    assert split_text("one two three four five six", 10) == ["one two", "three four", "five six"]


def test_sentence_keeps_closing_quote():
    assert split_text('He said "stop." Then left the room quietly.', 20) == ['He said "stop."',
                                                                           "Then left the room", "quietly."]


def test_parts_never_exceed_limit_and_keep_all_words():
    text = ("Señor Müller, ça va? Das Wetter ist schön. 東京は晴れです。" * 40).strip()
    parts = split_text(text, 160)
    assert all(0 < len(p) <= 160 for p in parts)
    assert " ".join(parts).split() == text.split()


def test_long_word_is_cut_between_graphemes_only():
    decomposed = unicodedata.normalize("NFD", "é") * 50          # e + COMBINING ACUTE, 100 code points
    parts = split_text(decomposed, 7)
    assert all(len(p) <= 7 and not unicodedata.combining(p[0]) for p in parts)
    assert "".join(parts) == decomposed
    family = "👨‍👩‍👧" * 5                                          # 5 code points per ZWJ family
    assert split_text(family, 7) == ["👨‍👩‍👧"] * 5
    flags = "🇫🇷🇩🇪🇪🇸"                                          # regional-indicator pairs
    assert split_text(flags, 3) == ["🇫🇷", "🇩🇪", "🇪🇸"]


def test_safe_boundary_rules():
    assert not safe_boundary("e\u0301", 1)
    assert not safe_boundary("👍\U0001F3FD", 1)
    assert safe_boundary("ab", 1)
    assert not safe_boundary("🇫🇷", 1)
