"""Best-effort decoding of email bytes and header values; never raises on bad input.

Real mail declares wrong charsets, puts raw UTF-8 in headers, splits a multibyte character across two
RFC 2047 encoded words and names charsets Python does not know. Every function here degrades to a
readable string instead of raising.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from email.message import Message
from email.utils import getaddresses

# What a header source may be: a parsed message, a mapping, or (name, value) pairs (Mailgun's
# message-headers JSON).
HeaderSource = Message | Mapping[str, str] | Sequence[Sequence[str]]

# Charsets that mailers declare by default whatever the bytes really are: try UTF-8 first.
_WEAK_CHARSETS = {"", "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin-1", "latin1",
                  "windows-1252", "cp1252", "unknown-8bit", "x-unknown", "8bit", "default"}
# Declared charset -> a superset Python knows, so extension characters still decode.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
              "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932", "sjis": "cp932",
              "x-sjis": "cp932", "iso-2022-jp": "iso2022_jp_2", "big5": "big5hkscs",
              "windows-874": "cp874", "tis-620": "cp874"}
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MSGID = re.compile(r"<([^<>\s]+)>")
_ADDR_SPEC = re.compile(r"[^\s<>,;\"()]+@[^\s<>,;\"()]+")
_ADDR_JUNK = re.compile(r"[\s<>\"()]")


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode body or header bytes: declared charset when it fits, else UTF-8, cp1252, latin-1."""
    declared = (charset or "").strip().strip('"').lower()
    if declared in _WEAK_CHARSETS:
        candidates = ["utf-8", "cp1252"]
    else:
        candidates = [_SUPERSETS.get(declared, declared), declared, "utf-8", "cp1252"]
        if declared == "iso-2022-jp":
            candidates.insert(2, "iso2022_jp_ext")
    for name in candidates:
        try:
            return data.decode(name)
        except (ValueError, LookupError):   # ValueError: also a charset name with a NUL in it
            continue
    return data.decode("latin-1")  # never fails: every byte maps to a character


def fix_surrogates(value: str) -> str:
    """The email parser keeps raw 8-bit header bytes as surrogate escapes; decode them properly."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return decode_bytes(value.encode("ascii", "surrogateescape"))


def _word_bytes(encoding: str, text: str) -> bytes:
    if encoding in "bB":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    return binascii.a2b_qp(text.replace("_", " ").encode("ascii", "replace"), header=True)


def decode_header_value(value: str | None) -> str:
    """Unfold a header and decode RFC 2047 encoded words in any charset."""
    if not value:
        return ""
    value = _FOLD.sub("", fix_surrogates(str(value)))
    pieces: list[tuple[str | bytes, str | None]] = []   # text, or (bytes, charset) of encoded words
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        after_word = bool(pieces) and isinstance(pieces[-1][0], bytes)
        if between and not (after_word and between.isspace()):   # RFC 2047 §6.2
            pieces.append((between, None))
        charset = match.group(1).split("*", 1)[0].lower()         # RFC 2231 language suffix
        try:
            data = _word_bytes(match.group(2), match.group(3))
        except (binascii.Error, ValueError):
            pieces.append((match.group(0), None))
            pos = match.end()
            continue
        last = pieces[-1] if pieces else None
        if last and isinstance(last[0], bytes) and last[1] == charset:
            pieces[-1] = (last[0] + data, charset)   # a character may straddle two words
        else:
            pieces.append((data, charset))
        pos = match.end()
    pieces.append((value[pos:], None))
    text = "".join(p if isinstance(p, str) else decode_bytes(p, cs) for p, cs in pieces)
    return re.sub(r"[\r\n\t ]+", " ", text).strip()


def header_pairs(source: HeaderSource) -> Iterator[tuple[str, str]]:
    """(name, raw value) pairs from a Message (without parsing), a mapping or a pair list."""
    if isinstance(source, Message):
        for name, value in source.raw_items():
            yield str(name), value if isinstance(value, str) else str(value)
    elif isinstance(source, Mapping):
        for name, value in source.items():
            yield str(name), "" if value is None else str(value)
    else:
        for pair in source:
            if len(pair) >= 2:
                yield str(pair[0]), "" if pair[1] is None else str(pair[1])


def raw_headers(source: HeaderSource, name: str) -> list[str]:
    wanted = name.lower()
    return [value for key, value in header_pairs(source) if key.lower() == wanted]


def first_header(source: HeaderSource, name: str) -> str | None:
    """The decoded value of the first header called `name`, or None."""
    values = raw_headers(source, name)
    return decode_header_value(values[0]) if values else None


def addresses(raw_values: Iterable[str]) -> list[tuple[str, str]]:
    """(decoded display name, lowercased addr-spec) for every address in the given header values.

    Addresses are split before decoding display names, so an encoded comma cannot split a name.
    """
    unfolded = [_FOLD.sub("", fix_surrogates(v)) for v in raw_values if v]
    try:
        pairs = getaddresses(unfolded)
    except Exception:  # noqa: BLE001 - stdlib parser bugs on hostile input; fall back to a regex
        pairs = [("", m) for v in unfolded for m in _ADDR_SPEC.findall(v)]
    out = []
    for name, addr in pairs:
        addr = addr.strip().strip("<>").lower()
        if _ADDR_JUNK.search(addr):   # unbalanced quotes or brackets: salvage the addr-spec
            found = _ADDR_SPEC.findall(addr)
            addr = found[-1] if found else ""
        if addr:
            out.append((decode_header_value(name), addr))
    return out


def message_ids(value: str | None) -> list[str]:
    """Message-IDs without angle brackets, in order, deduplicated (References, In-Reply-To)."""
    if not value:
        return []
    value = fix_surrogates(value)
    found = _MSGID.findall(value) or [w for w in value.split() if "@" in w]
    seen: dict[str, None] = {}
    for mid in found:
        seen.setdefault(mid.strip("<>"), None)
    return [m for m in seen if m]

