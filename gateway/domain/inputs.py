"""Input from outside, checked in one place: JSON bodies and frames, storable strings, ids.

Every route decodes JSON with `loads` (depth-limited, no NaN/Infinity, integers within 64 bits,
strings PostgreSQL can store), and every inbound message passes `clean_inbound` before it joins an
ingest batch. What PostgreSQL cannot store is never sent to it: a bad item is refused alone with an
`InputError` (HTTP 400, SMTP 550, a chat error frame) instead of failing the batch it would join.

Policy: ids (provider message ids, addresses, external ids) are *rejected* when empty, too long
(`ID_MAX`, enforced by the schema too: migrations/0008) or carrying control characters; they are
never cut or cleaned, since two different ids must never become one. Free text from providers
(message bodies, names, subjects, audit copies) is *cleaned*: NUL characters are dropped and lone
surrogates become U+FFFD, because the customer's message is worth more than those bytes.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from gateway.channels.errors import PayloadError
from gateway.domain.types import Attachment, Inbound, Location, StatusUpdate

ID_MAX = 512                 # characters of any stored id (see migrations/0008_input_widths.sql)
BIGINT_MIN, BIGINT_MAX = -2**63, 2**63 - 1
MAX_DEPTH = 32               # nesting of JSON objects/arrays a body or frame may have
_ASCII_ID = re.compile(r"[0-9]{1,19}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InputError(PayloadError):
    """Input we refuse, naming the field and why (HTTP 400, SMTP 550, a chat error frame)."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid_input"):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.code, self.reason = field, code, message


# -- strings ------------------------------------------------------------------------------------

def unstorable(value: str) -> str | None:
    """Why PostgreSQL text/jsonb cannot hold `value` (NUL, lone surrogate), or None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates)"
    return None


def check_text(value: str, field: str) -> str:
    """`value` unchanged, or InputError when PostgreSQL cannot store it."""
    reason = unstorable(value)
    if reason:
        raise InputError(reason, field=field)
    return value


def clean_text(value: str) -> str:
    """Free text made storable: NUL dropped, lone surrogates replaced by U+FFFD."""
    return value if unstorable(value) is None else _scrub(value)


def _scrub(value: str) -> str:
    out = value.replace("\x00", "")
    if not out.isascii():
        out = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in out)
    return out


def clean_tree(value: Any, field: str) -> Any:
    """A JSON-able tree with every string cleaned; InputError for NaN/Infinity or a too deep tree."""
    return _walk(value, field, strings="clean")


def check_tree(value: Any, field: str) -> Any:
    """`value` unchanged, or InputError naming where it holds a string PostgreSQL cannot store."""
    return _walk(value, field, strings="reject", max_depth=10_000)


def check_id(value: Any, field: str, *, max_len: int = ID_MAX) -> str:
    """An id as stored: a non-empty string of at most `max_len` characters, no control characters,
    no surrogates. Rejected, never cut: two ids sharing a prefix must stay two."""
    if not isinstance(value, str):
        raise InputError("must be a string", field=field)
    if not value.strip():
        raise InputError("must not be empty", field=field)
    if len(value) > max_len:
        raise InputError(f"must be at most {max_len} characters", field=field, code="too_long")
    if _CONTROL.search(value):
        raise InputError("must not contain control characters", field=field)
    return check_text(value, field)


# -- numbers and ids ----------------------------------------------------------------------------

def int_id(value: Any, field: str) -> int:
    """A row id given in JSON: an integer (not a bool, float or string) from 1 to 2**63-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= BIGINT_MAX:
        raise InputError("must be a positive integer id", field=field)
    return value


def digits_id(raw: str, field: str) -> int:
    """A row id given in a path or query: ASCII digits only (no '+', spaces or other scripts' digits)."""
    if not isinstance(raw, str) or not _ASCII_ID.fullmatch(raw) or not 0 < int(raw) <= BIGINT_MAX:
        raise InputError("must be a positive integer id", field=field)
    return int(raw)


def digits_int(raw: str, field: str) -> int:
    """An integer given in a path or query: optional '-' and ASCII digits, within 64 bits."""
    text = raw[1:] if isinstance(raw, str) and raw.startswith("-") else raw
    if not isinstance(text, str) or not _ASCII_ID.fullmatch(text):
        raise InputError("must be an integer", field=field)
    value = int(raw)
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        raise InputError("must be a 64-bit integer", field=field)
    return value


def finite(value: Any, field: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number (NaN and Infinity rejected), optionally within [lo, hi]."""
    if isinstance(value, bool):
        raise InputError("must be a number", field=field)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError("must be a number", field=field) from None
    if not math.isfinite(number):
        raise InputError("must be a finite number", field=field)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise InputError(f"must be from {lo} to {hi}", field=field)
    return number


def timestamp(raw: Any, field: str) -> datetime:
    """An ISO 8601 date-time with an offset (a naive time is ambiguous), in UTC, within the range
    Python and PostgreSQL both hold (year 1 at +14:00 does not fit in UTC)."""
    if not isinstance(raw, str):
        raise InputError("must be an ISO 8601 date-time string", field=field)
    try:
        value = datetime.fromisoformat(raw.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InputError("must be an ISO 8601 date-time", field=field) from None
    if value.tzinfo is None:
        raise InputError("needs a UTC offset (e.g. 2025-01-31T09:00:00+01:00 or ...Z)", field=field)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise InputError("is out of range", field=field) from None


# -- JSON ---------------------------------------------------------------------------------------

def _parse_int(text: str) -> int:
    value = int(text)
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        raise _Bad("numbers must fit in 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad("numbers must be finite")
    return value


def _parse_constant(name: str):
    raise _Bad(f"{name} is not valid JSON")


class _Bad(ValueError):
    pass


def loads(raw: bytes | str, *, field: str = "body", max_depth: int = MAX_DEPTH, strings: str = "reject") -> Any:
    """Strict JSON: InputError (naming where) for malformed text, nesting deeper than `max_depth`,
    NaN/Infinity and integers beyond 64 bits. Strings PostgreSQL cannot store are rejected
    (`strings="reject"`, for our API), or kept for a later per-item check (`"keep"`, for provider
    payloads carrying several messages: `clean_inbound` then refuses or cleans each alone)."""
    try:
        data = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _Bad as exc:
        raise InputError(str(exc), field=field, code="invalid_json") from None
    except RecursionError:
        raise InputError(f"nested deeper than {max_depth} levels", field=field, code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", field=field, code="invalid_json") from None
    return _walk(data, field, strings=strings, max_depth=max_depth)


def _walk(value: Any, field: str, *, strings: str, max_depth: int = MAX_DEPTH) -> Any:
    """Check (or clean) every string and number of a decoded tree, iteratively (no recursion)."""
    clean = strings == "clean"

    def fix(v: Any, where: str) -> Any:
        if isinstance(v, str):
            reason = None if strings == "keep" else unstorable(v)
            if reason is None:
                return v
            if clean:
                return _scrub(v)
            raise InputError(reason, field=where)
        if isinstance(v, float) and not math.isfinite(v):
            raise InputError("must be a finite number", field=where)
        return v

    value = fix(value, field)
    stack: list[tuple[Any, str, int]] = [(value, field, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, where, depth = stack.pop()
        if depth > max_depth:
            raise InputError(f"nested deeper than {max_depth} levels", field=field, code="invalid_json")
        if isinstance(node, dict):
            for key in list(node):
                new_key = fix(key, f"{where} key")
                child = fix(node.pop(key) if new_key != key else node[key], f"{where}.{new_key}")
                node[new_key] = child
                if isinstance(child, (dict, list)):
                    stack.append((child, f"{where}.{new_key}", depth + 1))
        else:
            for i, item in enumerate(node):
                child = node[i] = fix(item, f"{where}[{i}]")
                if isinstance(child, (dict, list)):
                    stack.append((child, f"{where}[{i}]", depth + 1))
    return value


def object_body(raw: bytes | str, *, field: str = "body") -> dict:
    """`loads` for bodies that must be a JSON object."""
    data = loads(raw, field=field)
    if not isinstance(data, dict):
        raise InputError("must be a JSON object", field=field, code="invalid_json")
    return data


# -- inbound messages ---------------------------------------------------------------------------

_TEXT_FIELDS = ("text", "profile_name", "reply_id", "reply_title", "in_reply_to", "thread_token",
                "subject", "full_text", "html")


def clean_inbound(inbound: Inbound) -> Inbound:
    """The message as it may join an ingest batch: ids checked (InputError), free text cleaned.

    Called for every inbound message of every channel before it is batched or stored, so one bad
    item is refused alone and never fails the statement it would have shared with others."""
    check_id(inbound.provider_message_id, "message id")
    check_id(inbound.sender, "sender")
    changes: dict[str, Any] = {}
    if isinstance(inbound.recipient, str) and not inbound.recipient.strip():
        changes["recipient"] = None   # our own address: an empty one is no address, not an error
    elif inbound.recipient is not None:
        check_id(inbound.recipient, "recipient")
    for name in _TEXT_FIELDS:
        value = getattr(inbound, name)
        if value is not None and not isinstance(value, str):   # a provider's list or object
            raise InputError("must be a string", field=name)
        if value and unstorable(value):
            changes[name] = _scrub(value)
    if inbound.references:
        refs = tuple(_scrub(r) for r in inbound.references)
        if refs != inbound.references:
            changes["references"] = refs
    if inbound.attachments:
        changes["attachments"] = tuple(_clean_attachment(a) for a in inbound.attachments)
    if inbound.location is not None:
        loc = inbound.location
        changes["location"] = Location(finite(loc.latitude, "latitude", lo=-90, hi=90),
                                       finite(loc.longitude, "longitude", lo=-180, hi=180),
                                       name=_opt_clean(loc.name), address=_opt_clean(loc.address))
    if inbound.raw:
        changes["raw"] = clean_tree(dict(inbound.raw), "raw")
    if inbound.extra:
        changes["extra"] = clean_tree(dict(inbound.extra), "extra")
    return replace(inbound, **changes) if changes else inbound


def _opt_clean(value: str | None) -> str | None:
    return _scrub(value) if isinstance(value, str) else value


def _clean_attachment(a: Attachment) -> Attachment:
    if a.size is not None and (isinstance(a.size, bool) or not isinstance(a.size, int) or a.size < 0):
        raise InputError("must be a non-negative integer", field="attachment size")
    return replace(a, **{k: _scrub(v) for k, v in vars(a).items() if isinstance(v, str) and unstorable(v)})


def clean_status(update: StatusUpdate) -> StatusUpdate:
    """A delivery status report as it may be applied: ids checked (InputError), text cleaned."""
    check_id(update.provider_message_id, "message id")
    changes: dict[str, Any] = {
        name: _scrub(value) for name in ("error_code", "error_message")
        if isinstance(value := getattr(update, name), str) and unstorable(value)}
    if update.recipient is not None:   # the status still counts without a usable recipient
        try:
            check_id(update.recipient, "recipient")
        except InputError:
            changes["recipient"] = None
    if update.raw:
        changes["raw"] = clean_tree(dict(update.raw), "raw")
    return replace(update, **changes) if changes else update
