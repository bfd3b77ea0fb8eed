"""Slot types: turning what the customer typed into a clean, JSON-able value (or None when invalid).

Each parser takes the raw text, the slot definition and the turn time and returns the canonical
value: order numbers upper-cased without separators, emails lower-cased, phones in E.164, dates as
ISO strings, text stripped.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any, Callable

import phonenumbers

from gateway.flows.nlu import normalize

SLOT_TYPES = ("order_number", "pattern", "email", "phone", "date", "number", "text")
DEFAULT_ORDER_PATTERN = r"[A-Z]{2}-?\d{4,}"
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y", "%d %B %Y", "%d %b %Y", "%B %d %Y",
                 "%b %d %Y", "%d.%m.%y")
_RELATIVE_DAYS = {
    "today": 0, "heute": 0, "hoy": 0, "aujourd hui": 0, "oggi": 0, "hoje": 0,
    "tomorrow": 1, "morgen": 1, "manana": 1, "demain": 1, "domani": 1, "amanha": 1,
    "day after tomorrow": 2, "ubermorgen": 2, "pasado manana": 2, "apres demain": 2, "dopodomani": 2,
}


def parse_order_number(text: str, slot, now: datetime) -> str | None:
    m = slot.regex.search(text.upper())
    if not m:
        return None
    return m.group(0).strip() if slot.keep_separators else re.sub(r"[\s\-]", "", m.group(0))


def parse_pattern(text: str, slot, now: datetime) -> str | None:
    m = slot.regex.search(text.strip())
    return m.group(0) if m else None


def parse_email(text: str, slot, now: datetime) -> str | None:
    m = _EMAIL.search(text)
    return m.group(0).lower() if m else None


def parse_phone(text: str, slot, now: datetime) -> str | None:
    candidates = [m.group(0) for m in re.finditer(r"\+?[\d\s().\-/]{6,}", text)]
    for raw in candidates or [text]:
        try:
            number = phonenumbers.parse(raw.strip(), slot.region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def parse_date(text: str, slot, now: datetime) -> str | None:
    norm = normalize(text)
    if norm in _RELATIVE_DAYS:
        return (now.date() + timedelta(days=_RELATIVE_DAYS[norm])).isoformat()
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text.strip().rstrip("."))
    cleaned = cleaned.replace(",", " ")
    cleaned = " ".join(cleaned.split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).date().isoformat()
        except ValueError:
            continue
    m = re.search(r"\b(\d{4}-\d{2}-\d{2})\b", text)
    if m:
        try:
            return date.fromisoformat(m.group(1)).isoformat()
        except ValueError:
            return None
    return None


def parse_number(text: str, slot, now: datetime) -> float | int | None:
    m = _NUMBER.search(text)
    if not m:
        return None
    raw = m.group(0).replace(",", ".")
    return float(raw) if "." in raw else int(raw)


def parse_text(text: str, slot, now: datetime) -> str | None:
    value = text.strip()
    return value if len(value) >= slot.min_length else None


PARSERS: dict[str, Callable[[str, Any, datetime], Any]] = {
    "order_number": parse_order_number,
    "pattern": parse_pattern,
    "email": parse_email,
    "phone": parse_phone,
    "date": parse_date,
    "number": parse_number,
    "text": parse_text,
}

# Types whose value can be spotted inside a longer message ("where is AB12345?"), so a collecting
# state entered on that message fills the slot at once instead of asking.
EXTRACTABLE = frozenset({"order_number", "pattern", "email"})


def parse_slot(slot, text: str, now: datetime):
    """The canonical value of `text` for this slot, or None if it is not valid."""
    if not text or not text.strip():
        return None
    return PARSERS[slot.type](text, slot, now)
