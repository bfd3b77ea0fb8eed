"""Normalized message shapes shared by every channel adapter and the core.

Adapters translate provider bytes into these frozen dataclasses (and back); the core never sees a
provider's dict. Everything here is pure data: no I/O, no database ids beyond plain ints.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping


class Channel(str, enum.Enum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    WEBCHAT = "webchat"
    API = "api"


class Purpose(str, enum.Enum):
    """Why a message is sent; consent rules depend on it."""

    REPLY = "reply"                  # conversational answer to something the customer wrote
    TRANSACTIONAL = "transactional"  # receipts, confirmations, the STOP confirmation itself
    MARKETING = "marketing"          # journeys' nudges, campaigns


# Normalized delivery statuses, in forward order. failed/undelivered are terminal, but a later
# delivered/read still wins over a stray failure (see gateway.domain.status).
STATUSES = ("queued", "sent", "delivered", "read", "failed", "undelivered")


@dataclass(frozen=True)
class Attachment:
    content_type: str | None = None
    url: str | None = None                 # where the provider serves it (may need auth)
    filename: str | None = None
    size: int | None = None
    provider_media_id: str | None = None   # e.g. WhatsApp media id, downloadable later
    sha256: str | None = None
    content_ref: str | None = None         # our own stored copy, if kept
    caption: str | None = None


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class Inbound:
    """One message a customer sent, on any channel.

    `sender` is the customer's address as the channel knows it (E.164 phone for sms/whatsapp,
    lowercase email, chat visitor id, API external id); identity normalization happens in
    gateway.domain.identity. `provider_message_id` is the provider's unique id and the dedupe key
    (unique per channel).
    """

    channel: Channel
    provider: str                      # twilio | meta | sendgrid | mailgun | smtp | webchat | api
    provider_message_id: str
    sender: str
    text: str = ""                     # what the bot sees (quotes/signatures stripped for email)
    recipient: str | None = None       # our address: number, phone_number_id, mailbox
    received_at: datetime | None = None
    profile_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    reply_id: str | None = None        # tapped button / list row / menu payload id
    reply_title: str | None = None
    in_reply_to: str | None = None     # provider id (or email Message-ID) this answers
    references: tuple[str, ...] = ()   # email References
    thread_token: str | None = None    # email reply+<token>@ address tag
    subject: str | None = None
    full_text: str | None = None       # complete original text when `text` was reduced
    html: str | None = None
    auto_generated: bool = False       # auto-reply / bounce / bulk: store, never answer
    raw: Mapping[str, Any] = field(default_factory=dict)     # audit copy (JSON-able)
    extra: Mapping[str, Any] = field(default_factory=dict)   # channel specifics (JSON-able)


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery status report for one of our outbound messages."""

    channel: Channel
    provider: str
    provider_message_id: str
    status: str                        # one of STATUSES
    occurred_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    recipient: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Button:
    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True)
class TemplateRef:
    """A pre-approved template (WhatsApp) or Twilio Content template."""

    name: str                          # WhatsApp template name, or Twilio ContentSid (HX...)
    language: str = "en_US"
    parameters: tuple[str, ...] = ()   # body parameters, in order
    variables: Mapping[str, str] = field(default_factory=dict)  # Twilio ContentVariables


@dataclass(frozen=True)
class OutgoingMessage:
    """What the outbox hands to a channel sender."""

    message_id: int                    # our message row id (idempotency / correlation)
    channel: Channel
    to: str                            # E.164, email, visitor id, external id
    text: str = ""
    sender: str | None = None          # our from-address override
    sender_name: str | None = None     # email: the From display name
    attachments: tuple[Attachment, ...] = ()
    buttons: tuple[Button, ...] = ()
    button_label: str | None = None    # WhatsApp list button text when > 3 options
    template: TemplateRef | None = None
    purpose: Purpose = Purpose.REPLY
    subject: str | None = None         # email
    html: str | None = None            # email
    in_reply_to: str | None = None     # email Message-ID / WhatsApp context wamid
    references: tuple[str, ...] = ()
    reply_to: str | None = None        # email Reply-To carrying the thread token
    list_unsubscribe_url: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Effects:
    """What a unit of work wants published after its transaction commits (realtime events, a
    wake-up for the outbox): collected as data inside the transaction, published by its owner."""

    events: list[tuple[str, dict]] = field(default_factory=list)
    wake_outbox: bool = False

    def emit(self, event_type: str, **payload) -> None:
        self.events.append((event_type, payload))

    def extend(self, other: "Effects") -> None:
        """Take on what another piece of the same unit of work wants published."""
        self.events.extend(other.events)
        self.wake_outbox = self.wake_outbox or other.wake_outbox


class SendOutcome(str, enum.Enum):
    SENT = "sent"               # provider accepted; provider_message_id set
    RETRY = "retry"             # transient (5xx, network, timeout): retry with backoff
    THROTTLED = "throttled"     # provider rate limit: slow this sender down and retry
    OPTED_OUT = "opted_out"     # recipient unsubscribed at the provider (Twilio 21610)
    FALLBACK = "fallback"       # this channel cannot reach them now (window closed, not on WhatsApp)
    FAILED = "failed"           # permanent: keep the code, do not retry


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    provider_message_id: str | None = None
    status: str | None = None          # initial provider status (queued/accepted/sent)
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None   # seconds, when the provider said so
    segments: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    sent_text: str | None = None       # the text the provider got, when it differs from the message's
