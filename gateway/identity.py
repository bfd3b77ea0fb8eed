"""Identity normalization: one customer, one contact, whatever the channel.

Phone numbers become E.164 (SMS and WhatsApp from one number are one contact), emails are
lowercased, chat visitors and API sources keep their ids. Pure functions, no I/O.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from email.utils import parseaddr

import phonenumbers

from gateway.types import Channel


class AddressError(ValueError):
    """An address that cannot be normalized (the message says which and why)."""


@dataclass(frozen=True)
class Address:
    kind: str      # phone | email | whatsapp_id | chat | api | email_unverified (see UNVERIFIED_EMAIL)
    value: str


@functools.lru_cache(maxsize=65_536)
def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 for a phone number as providers send it. Raises AddressError.

    Cached: customers write again and again, and parsing is one of the costlier steps of a webhook."""
    text = raw.strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:"):]
    if text and text[0].isdigit() and default_region is None:
        text = "+" + text  # WhatsApp wa_id and Twilio WaId come without "+"
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise AddressError(f"not a phone number: {raw!r} ({exc})") from None
    if not phonenumbers.is_possible_number(number):
        raise AddressError(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    _, addr = parseaddr(raw.strip())
    addr = addr.strip().lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or "." not in domain or " " in addr:
        raise AddressError(f"not an email address: {raw!r}")
    if len(addr) > 254:   # RFC 5321's limit; longer is refused, never cut
        raise AddressError("an email address has at most 254 characters")
    return addr


def address_for(channel: Channel | str, raw: str, kind_hint: str | None = None) -> Address:
    """The identity an inbound sender maps to."""
    channel = Channel(channel)
    if not raw or not raw.strip():
        raise AddressError(f"empty {channel.value} sender address")
    if kind_hint == "whatsapp_id":
        return Address("whatsapp_id", raw.strip())
    if channel in (Channel.SMS, Channel.WHATSAPP):
        return Address("phone", normalize_phone(raw))
    if channel is Channel.EMAIL:
        return Address("email", normalize_email(raw))
    if channel is Channel.WEBCHAT:
        return Address("chat", raw.strip())
    return Address("api", raw.strip())


# Groups mail whose From is not authenticated but names another contact's address: such a contact
# is never reached by it (no channel below), so nothing is sent to an address anyone can forge.
UNVERIFIED_EMAIL = "email_unverified"


def channels_for_kind(kind: str) -> tuple[Channel, ...]:
    """Which channels can reach an identity of this kind."""
    return {
        "phone": (Channel.SMS, Channel.WHATSAPP),
        "whatsapp_id": (Channel.WHATSAPP,),
        "email": (Channel.EMAIL,),
        "chat": (Channel.WEBCHAT,),
        "api": (Channel.API,),
    }.get(kind, ())


def address_hash(kind: str, value: str) -> str:
    """Stable hash kept in suppression tombstones after a contact is erased."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
