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

from gateway.domain.inputs import InputError, check_id
from gateway.domain.types import Channel


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


# The identity kind each channel's addresses have (WhatsApp: see `address_kind`)
_CHANNEL_KIND = {Channel.SMS: "phone", Channel.WHATSAPP: "phone", Channel.EMAIL: "email",
                 Channel.WEBCHAT: "chat", Channel.API: "api"}


def address_kind(channel: Channel | str, address: str) -> str:
    """The identity kind of a normalized address on a channel: the one place this is decided.

    On WhatsApp a phone number is E.164 ("+..."); anything else is a WhatsApp user id (a
    business-scoped id, BSUID), kind "whatsapp_id". Consent and identities are keyed by this kind."""
    channel = Channel(channel)
    if channel is Channel.WHATSAPP and not address.startswith("+"):
        return "whatsapp_id"
    return _CHANNEL_KIND[channel]


def address_for(channel: Channel | str, raw: str, kind_hint: str | None = None) -> Address:
    """The identity an inbound sender maps to (`kind_hint` "whatsapp_id": the adapter saw a user id,
    not a phone number)."""
    channel = Channel(channel)
    if not raw or not raw.strip():
        raise AddressError(f"empty {channel.value} sender address")
    if kind_hint == "whatsapp_id":
        return Address("whatsapp_id", raw.strip())
    kind = _CHANNEL_KIND[channel]
    if kind == "phone":
        return Address(kind, normalize_phone(raw))
    if kind == "email":
        return Address(kind, normalize_email(raw))
    return Address(kind, raw.strip())


# Identity kinds as the API names them -> stored kind (an external id is the API channel's identity)
API_KINDS = {"phone": "phone", "email": "email", "whatsapp_id": "whatsapp_id", "external_id": "api"}
# the kinds of address a consent answer can be recorded for (imports name one of these)
CONSENT_KINDS = ("phone", "email", "whatsapp_id")


def parse_identity(kind, address) -> tuple[str, str]:
    """An identity given through the API: (stored kind, normalized address), or ValueError naming
    what is wrong."""
    if not isinstance(kind, str) or kind not in API_KINDS:
        raise ValueError(f"kind must be one of {', '.join(API_KINDS)}")
    if not isinstance(address, str) or not address.strip():
        raise ValueError("address must be a non-empty string")
    try:
        if kind == "phone":
            return "phone", normalize_phone(address)
        if kind == "email":
            return "email", normalize_email(address)
        if kind == "whatsapp_id":
            digits = address.strip()
            if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
                raise ValueError("a WhatsApp id is the digits WhatsApp gives (at most 20)")
            return "whatsapp_id", digits
        return "api", check_id(address.strip(), "address")
    except (AddressError, InputError) as exc:
        raise ValueError(str(exc)) from None


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
