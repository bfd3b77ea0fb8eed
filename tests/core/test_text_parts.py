"""Splitting long bodies into parts at natural boundaries (gateway.domain.text_parts)."""
import unicodedata

from gateway.domain.text_parts import safe_boundary, split_text


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
