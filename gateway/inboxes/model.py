"""Pure rules of inboxes: which providers serve a channel, what an address looks like on each, and
which of our addresses an inbound message was sent to."""
from __future__ import annotations

import re

from gateway.domain.identity import AddressError, normalize_email, normalize_phone
from gateway.domain.types import Channel, Inbound

# channel -> the providers an inbox on it may use (the first is the default's when settings say nothing)
PROVIDERS: dict[str, tuple[str, ...]] = {
    "sms": ("twilio",),
    "whatsapp": ("twilio", "meta"),
    "email": ("smtp",),
    "webchat": ("webchat",),
    "api": ("api",),
}
# provider -> the credential fields an inbox may carry instead of the provider's settings
CREDENTIAL_FIELDS: dict[str, tuple[str, ...]] = {
    "twilio": ("account_sid", "auth_token", "api_key_sid"),
    "meta": ("access_token",),
    "smtp": ("host", "port", "username", "password"),
}
MESSAGING_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")
PHONE_NUMBER_ID = re.compile(r"^[0-9]{1,32}$")
SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def normalize_address(channel: str, provider: str, raw: str) -> str:
    """Our address as stored and matched: E.164 numbers, a Messaging Service SID, a WhatsApp phone
    number id (digits), a lowercase mailbox, or a site/source name. Raises AddressError."""
    raw = raw.strip()
    if channel == "sms" and MESSAGING_SERVICE.match(raw):
        return raw
    if channel == "sms" or (channel == "whatsapp" and provider == "twilio"):
        return normalize_phone(raw)
    if channel == "whatsapp":
        if not PHONE_NUMBER_ID.match(raw):
            raise AddressError("a WhatsApp phone number id is digits (the id Meta shows, not the number)")
        return raw
    if channel == "email":
        return normalize_email(raw)
    if not SITE.match(raw):
        raise AddressError("a site or source name is letters, digits, '.', '_', ':' or '-' (at most 200)")
    return raw


def _mailbox(raw: str) -> str | None:
    """support+tag@x.com -> support@x.com, lowercased; None when it is not an address."""
    try:
        addr = normalize_email(raw)
    except AddressError:
        return None
    local, _, domain = addr.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def addresses_of(inbound: Inbound) -> list[str]:
    """The addresses of ours this message was sent to, best first: the candidates an inbox is
    matched against (Twilio `To` and its Messaging Service, the WhatsApp phone number id, every
    mail recipient without its +tag, the chat site)."""
    extra = inbound.extra or {}
    if inbound.channel is Channel.EMAIL:
        envelope = extra.get("envelope") if isinstance(extra.get("envelope"), dict) else {}
        raw = [inbound.recipient, *(extra.get("to") or ()), *(extra.get("cc") or ()), *(envelope.get("to") or ())]
        found = [_mailbox(a) for a in raw if isinstance(a, str)]
    else:
        found = [inbound.recipient, extra.get("site")]
        raw = inbound.raw or {}
        if inbound.provider == "twilio" and isinstance(raw.get("MessagingServiceSid"), str):
            found.append(raw["MessagingServiceSid"])
    out: list[str] = []
    for a in found:
        if isinstance(a, str) and a and len(a) <= 320 and "\x00" not in a and a not in out:
            out.append(a)
    return out
