"""Twilio webhooks: X-Twilio-Signature checks and parsing of inbound messages and status callbacks.

Pure translation: form parameters in, `Inbound` / `StatusUpdate` out. Twilio adds parameters
without notice, so unknown keys are never rejected; they are kept in `raw` and signed over.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

from gateway.channels.errors import PayloadError
from gateway.domain.inputs import digits_int
from gateway.domain.types import Attachment, Channel, Inbound, Location, StatusUpdate

PROVIDER = "twilio"
WHATSAPP_PREFIX = "whatsapp:"
SIGNATURE_HEADER = "X-Twilio-Signature"
# Present when the webhook is signed with a SharedKey: "key=<sharedKeyId>,algorithm=HMAC_SHA256".
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1, HMAC_SHA256 = "HMAC_SHA1", "HMAC_SHA256"
_HASHES = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}
MAX_MEDIA = 10                  # media per inbound message (Twilio's limit)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

Params = Iterable[tuple[str, str]] | Mapping[str, str]

# Twilio's MessageStatus values -> our normalized STATUSES; None: not an outbound status.
_STATUS_MAP: dict[str, str | None] = {
    "accepted": "queued", "scheduled": "queued", "queued": "queued", "sending": "queued",
    "sent": "sent", "delivered": "delivered", "partially_delivered": "delivered", "read": "read",
    "failed": "failed", "canceled": "failed", "undelivered": "undelivered",
    "receiving": None, "received": None,
}


def _pairs(params: Params) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(k), str(v)) for k, v in items]


def _first(params: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params:
        out.setdefault(key, value)
    return out


# --- signatures -------------------------------------------------------------------------------

def compute_signature(url: str, params: Params, auth_token: str, algorithm: str = HMAC_SHA1) -> str:
    """base64(HMAC(key, url + name1 + value1 + ...)) exactly like twilio-python's RequestValidator:
    names sorted by code point, and for a repeated name every distinct value in sorted order.
    `algorithm` is HMAC_SHA1 (Auth Token) or HMAC_SHA256 (SharedKey)."""
    values: dict[str, set[str]] = {}
    for key, value in _pairs(params):
        values.setdefault(key, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    mac = hmac.new(auth_token.encode(), data.encode(), _HASHES[algorithm.upper()])
    return base64.b64encode(mac.digest()).decode()


def signing_secret(settings_header: str | None, *, auth_token: str, shared_key: str | None
                   ) -> tuple[str | None, str]:
    """(secret, algorithm) a webhook was signed with, from its X-Twilio-Webhooks-Signature-Settings.

    Without the header: the account Auth Token with HMAC-SHA1. With it: the SharedKey secret and the
    algorithm it names (HMAC-SHA1 when it names none). No secret when no SharedKey is configured
    or the algorithm is unknown: such a webhook cannot verify.
    """
    if not (settings_header or "").strip():
        return auth_token, HMAC_SHA1
    algorithm = HMAC_SHA1
    for part in settings_header.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
    if algorithm not in _HASHES:
        return None, algorithm
    return shared_key or None, algorithm


def _port_variants(url: str) -> tuple[str, str]:
    """The URL with and without the port, as twilio-python's add_port/remove_port build them
    (Twilio itself signs inconsistently with or without :443/:80)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.port:
        with_port = url
        without_port = urlunsplit(parts._replace(netloc=netloc.rsplit(":", 1)[0]))
    else:
        default = 443 if parts.scheme == "https" else 80
        with_port = urlunsplit(parts._replace(netloc=f"{netloc}:{default}"))
        without_port = url
    return with_port, without_port


def _matches(expected: str, signature: str) -> bool:
    return hmac.compare_digest(expected.encode(), signature.encode())


def validate_signature(url: str, params: Params, signature: str | None, auth_token: str | None,
                       algorithm: str = HMAC_SHA1) -> bool:
    """True when `signature` is Twilio's signature of this form webhook (constant-time compare)."""
    if not signature or not auth_token or algorithm.upper() not in _HASHES:
        return False
    pairs = _pairs(params)
    # Each variant is compared in constant time; which variant matched is no secret, so the
    # second HMAC is only computed when the first does not match.
    return any(_matches(compute_signature(u, pairs, auth_token, algorithm), signature)
               for u in _port_variants(url))


def validate_signature_json(url: str, raw_body: bytes, signature: str | None, auth_token: str) -> bool:
    """The JSON-body form: `bodySHA256` in the query must equal sha256(raw_body) and the
    signature covers the URL alone."""
    if not signature or not auth_token:
        return False
    claimed = parse_qs(urlsplit(url).query).get("bodySHA256", [""])[0]
    body_ok = hmac.compare_digest(hashlib.sha256(raw_body).hexdigest().encode(), claimed.encode())
    sig_ok = any([_matches(compute_signature(u, (), auth_token), signature) for u in _port_variants(url)])
    return body_ok and sig_ok


def public_url(configured_public_url: str | None, scheme: str, host: str, path_qs: str) -> str:
    """The URL Twilio signed. Behind a proxy the request's own scheme/host are internal, so a
    configured public base URL (optionally with a path prefix the proxy strips) wins."""
    if not configured_public_url:
        return f"{scheme}://{host}{path_qs}"
    base = configured_public_url.rstrip("/")
    prefix = urlsplit(base).path
    if prefix and (path_qs == prefix or path_qs.startswith(prefix + "/") or path_qs.startswith(prefix + "?")):
        path_qs = path_qs[len(prefix):]  # the proxy kept the prefix: do not add it twice
    return base + path_qs


# --- parsing ----------------------------------------------------------------------------------

def _address(value: str) -> tuple[Channel, str]:
    if value.startswith(WHATSAPP_PREFIX):
        return Channel.WHATSAPP, value[len(WHATSAPP_PREFIX):]
    return Channel.SMS, value


def _raw(pairs: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    raw: dict[str, str | list[str]] = {}
    for key, value in pairs:
        if key in raw:
            prev = raw[key]
            raw[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            raw[key] = value
    return raw


def _attachments(p: dict[str, str]) -> tuple[Attachment, ...]:
    count = digits_int(p.get("NumMedia") or "0", "NumMedia")
    if not 0 <= count <= MAX_MEDIA:   # Twilio sends at most 10; a huge count must not loop for ever
        raise PayloadError(f"NumMedia must be from 0 to {MAX_MEDIA}: {count}")
    return tuple(Attachment(content_type=p.get(f"MediaContentType{i}") or None, url=p[f"MediaUrl{i}"])
                 for i in range(count) if p.get(f"MediaUrl{i}"))


def _location(p: dict[str, str]) -> Location | None:
    if p.get("MessageType") != "location" and not ("Latitude" in p and "Longitude" in p):
        return None
    try:
        return Location(float(p["Latitude"]), float(p["Longitude"]),
                        name=p.get("Label") or None, address=p.get("Address") or None)
    except (KeyError, ValueError):
        raise PayloadError("location message without numeric Latitude/Longitude") from None


def parse_inbound(params: Params) -> Inbound:
    """A Twilio inbound-message webhook (SMS, MMS or WhatsApp) as an `Inbound`."""
    pairs = _pairs(params)
    p = _first(pairs)
    sid = p.get("MessageSid") or p.get("SmsMessageSid") or p.get("SmsSid")
    if not sid:
        raise PayloadError("MessageSid is missing")
    if not p.get("From"):
        raise PayloadError("From is missing")
    channel, sender = _address(p["From"])
    recipient = _address(p["To"])[1] if p.get("To") else None
    extra: dict[str, str] = {}
    if channel is Channel.WHATSAPP and not sender.startswith("+"):
        extra["address_kind"] = "whatsapp_id"  # a business-scoped user id (BSUID), not a phone
    for key, name in (("AccountSid", "account_sid"), ("MessagingServiceSid", "messaging_service_sid"),
                      ("WaId", "wa_id"), ("NumSegments", "num_segments"), ("MessageType", "message_type")):
        if p.get(key):
            extra[name] = p[key]
    text = p.get("Body", "")
    return Inbound(
        channel=channel, provider=PROVIDER, provider_message_id=sid, sender=sender, recipient=recipient,
        text=text or p.get("ButtonText", ""), profile_name=p.get("ProfileName") or None,
        attachments=_attachments(p), location=_location(p),
        reply_id=p.get("ButtonPayload") or None, reply_title=p.get("ButtonText") or None,
        in_reply_to=p.get("OriginalRepliedMessageSid") or None,
        raw=_raw(pairs), extra=extra,
    )


def parse_status(params: Params) -> StatusUpdate | None:
    """A Twilio status callback as a `StatusUpdate`; None for statuses that are not about an
    outbound message (receiving/received) or that we do not know (acknowledge and ignore)."""
    pairs = _pairs(params)
    p = _first(pairs)
    sid = p.get("MessageSid") or p.get("SmsSid") or p.get("SmsMessageSid")
    if not sid:
        raise PayloadError("MessageSid is missing")
    raw_status = (p.get("MessageStatus") or p.get("SmsStatus") or "").lower()
    if not raw_status:
        raise PayloadError("MessageStatus is missing")
    status = _STATUS_MAP.get(raw_status)
    if status is None:
        return None
    channel, recipient = _address(p["To"]) if p.get("To") else (Channel.SMS, None)
    return StatusUpdate(
        channel=channel, provider=PROVIDER, provider_message_id=sid, status=status,
        error_code=p.get("ErrorCode") or None, error_message=p.get("ErrorMessage") or None,
        recipient=recipient, raw=_raw(pairs),
    )
