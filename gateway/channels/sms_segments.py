"""SMS encoding and segment counting (how many SMS a body is billed as).

Counting follows Twilio's segment calculator (providers.md section 4): GSM-7 when every character
is in the basic or extension table (extension characters cost an ESC septet too), UCS-2 otherwise,
counted in UTF-16 code units. A single segment holds 160 septets / 70 units; concatenated segments
hold 153 / 67 because of the UDH, and an ESC pair or a surrogate pair is never split across two
segments, so the count can exceed ceil(total / 153).
"""
from __future__ import annotations

from dataclasses import dataclass

# GSM 03.38 basic table without ESC (0x1B): 127 characters, one septet each.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: ESC + code, two septets each.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_MULTI = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str      # "GSM-7" | "UCS-2"
    units: int         # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _char_units(text: str, encoding: str) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def count_segments(text: str) -> SegmentInfo:
    """Encoding, units and the number of SMS segments `text` is billed as."""
    encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    units = _char_units(text, encoding)
    total = sum(units)
    if total <= _SINGLE[encoding]:
        return SegmentInfo(encoding, total, 1)
    capacity = _MULTI[encoding]
    segments, used = 1, 0
    for cost in units:                      # a 2-unit character never straddles a boundary
        if used + cost > capacity:
            segments, used = segments + 1, 0
        used += cost
    return SegmentInfo(encoding, total, segments)
