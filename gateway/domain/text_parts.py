"""Cutting a long text into parts that each fit a limit, at natural boundaries.

Used for bodies longer than one provider message may carry. A cut prefers a paragraph break, then
a line break, a sentence end, a space; it never splits a user-perceived character (combining
sequence, emoji sequence, flag, surrogate pair).
"""
from __future__ import annotations

import re
import unicodedata

# Boundaries to prefer, best first; group 1 is where the part ends (whitespace after it is dropped).
_BREAKS = (
    re.compile(r"\S(\s*\n[ \t]*\n)"),                  # paragraph
    re.compile(r"\S(\s*\n)"),                            # line
    re.compile(r"[.!?…。！？][\"'”’)\]]*(\s)"),          # sentence end, closing quotes stay with it
    re.compile(r"\S(\s)"),                                # word
)
_SPACE = re.compile(r"\s*")
_ZWJ = "\u200d"


def _is_extender(ch: str) -> bool:
    """A character that belongs to the grapheme before it (combining mark, ZWJ, selector, ...)."""
    cp = ord(ch)
    return (unicodedata.combining(ch) != 0
            or unicodedata.category(ch) in ("Mn", "Me", "Mc")
            or ch == _ZWJ
            or 0xFE00 <= cp <= 0xFE0F            # variation selectors
            or 0x1F3FB <= cp <= 0x1F3FF          # emoji skin tones
            or 0xE0020 <= cp <= 0xE007F          # emoji tag sequences
            or 0xDC00 <= cp <= 0xDFFF)           # low surrogate (surrogatepass strings)


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def safe_boundary(text: str, i: int) -> bool:
    """True when cutting `text` before index `i` keeps every user-perceived character whole."""
    if i <= 0 or i >= len(text):
        return True
    if _is_extender(text[i]) or text[i - 1] == _ZWJ:
        return False
    if _is_regional(text[i]) and _is_regional(text[i - 1]):
        run = 0                                  # flags are pairs: cut only after an even run
        while i - 1 - run >= 0 and _is_regional(text[i - 1 - run]):
            run += 1
        return run % 2 == 0
    return True


def split_text(text: str, max_chars: int = 1600) -> list[str]:
    """Split `text` into parts of at most `max_chars` characters.

    Cuts at the last paragraph break, else line break, else sentence end, else space in the
    window (whitespace at the cut is dropped); a word longer than the window is cut at the last
    boundary that does not split a combining sequence, emoji sequence or surrogate pair.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    parts: list[str] = []
    rest = text
    while len(rest) > max_chars:
        cut = _find_cut(rest, max_chars)
        if cut is None:
            end = max_chars
            while end > 0 and not safe_boundary(rest, end):
                end -= 1
            if end == 0:  # one grapheme longer than the limit: keep at least code points whole
                end = max_chars
            parts.append(rest[:end])
            rest = rest[end:]
        else:
            start, end = cut
            parts.append(rest[:start])
            rest = rest[end:]
    if rest or not parts:
        parts.append(rest)
    return parts


def _find_cut(text: str, max_chars: int) -> tuple[int, int] | None:
    """(end of this part, start of the next) at the best boundary within the window."""
    window = text[:max_chars + 1]
    floor = max_chars // 3  # do not leave a tiny part just to cut at a nicer boundary
    for pattern in _BREAKS:
        best = None
        for m in pattern.finditer(window):
            if floor < m.start(1) <= max_chars:
                best = m.start(1)
        if best is not None:
            return best, _SPACE.match(text, best).end()
    return None
