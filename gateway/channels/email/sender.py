"""SMTP delivery of outgoing email with aiosmtplib, classifying the server's answer for the outbox."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.utils import parseaddr
from typing import TYPE_CHECKING

import aiosmtplib
import structlog

from gateway.app.settings import Settings
from gateway.channels.email.outgoing import prepare_outgoing
from gateway.channels.email.render import build_email, email_bytes, email_text
from gateway.channels.email.unsubscribe import unsubscribe_url
from gateway.channels.modes import live_channels
from gateway.domain.types import Channel, OutgoingMessage, SendOutcome, SendResult

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = structlog.get_logger(__name__)


def classify_smtp_error(exc: BaseException) -> SendResult:
    """4xx and network trouble -> RETRY; 5xx -> FAILED; the reply text and code are kept.

    Authentication failures are RETRY although 535 is a 5xx: the message is fine and the fix is
    our configuration, so the outbox should keep it until its attempts run out.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients
        transient = any(400 <= r.code < 500 for r in refused)
        first = next((r for r in refused if 400 <= r.code < 500), refused[0]) if transient else refused[0]
        return SendResult(SendOutcome.RETRY if transient else SendOutcome.FAILED,
                          error_code=str(first.code), error_message=first.message)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SendResult(SendOutcome.RETRY, error_code=str(exc.code),
                          error_message=f"authentication failed: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        permanent = 500 <= exc.code < 600
        return SendResult(SendOutcome.FAILED if permanent else SendOutcome.RETRY,
                          error_code=str(exc.code), error_message=exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # e.g. a non-ASCII address and a server without SMTPUTF8: retrying will not help
        return SendResult(SendOutcome.FAILED, error_code="not_supported", error_message=str(exc))
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return SendResult(SendOutcome.RETRY, error_code="timeout", error_message=str(exc) or "timeout")
    return SendResult(SendOutcome.RETRY, error_code="connection",
                      error_message=str(exc) or type(exc).__name__)


class SmtpSender:
    """ChannelSender for email over an SMTP relay (submission with optional AUTH and TLS).

    `envelope_from` sets MAIL FROM (where bounces go; default: the From address).
    `unsubscribe_url_for(msg)` gives a per-recipient one-click URL for marketing mail.
    """

    channel = Channel.EMAIL
    provider = "smtp"

    def __init__(self, *, hostname: str, port: int, username: str | None = None,
                 password: str | None = None, use_tls: bool = False, start_tls: bool | None = None,
                 timeout: float = 30.0, from_address: str, message_id_domain: str,
                 unsubscribe_url_for: Callable[[OutgoingMessage], str | None] | None = None,
                 unsubscribe_mailto: str | None = None, envelope_from: str | None = None):
        self.hostname = hostname
        self.port = port
        self.username = username
        self._password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.timeout = timeout
        self.timeout_seconds = timeout
        self.from_address = from_address
        self.message_id_domain = message_id_domain
        self.unsubscribe_url_for = unsubscribe_url_for
        self.unsubscribe_mailto = unsubscribe_mailto
        self.envelope_from = envelope_from

    def __repr__(self) -> str:   # never shows the password
        return f"SmtpSender({self.hostname}:{self.port}, user={self.username!r})"

    async def send(self, msg: OutgoingMessage) -> SendResult:
        try:
            email = build_email(
                msg, from_address=self.from_address, message_id_domain=self.message_id_domain,
                one_click_unsubscribe_url=self.unsubscribe_url_for(msg) if self.unsubscribe_url_for else None,
                unsubscribe_mailto=self.unsubscribe_mailto)
            data = email_bytes(email)
        except (ValueError, TypeError, UnicodeError) as exc:
            return SendResult(SendOutcome.FAILED, error_code="invalid_message", error_message=str(exc))
        message_id = str(email["Message-ID"]).strip().strip("<>")
        sender = self.envelope_from or parseaddr(str(email["From"]))[1]
        recipient = parseaddr(msg.to)[1]
        if "@" not in recipient:
            return SendResult(SendOutcome.FAILED, error_code="invalid_message",
                              error_message=f"not an email address: {msg.to!r}")
        try:
            refused, reply = await aiosmtplib.send(
                data, sender=sender, recipients=[recipient], hostname=self.hostname,
                port=self.port, username=self.username, password=self._password,
                use_tls=self.use_tls, start_tls=self.start_tls, timeout=self.timeout)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            result = classify_smtp_error(exc)
            log.warning("email_send_failed", message_id=msg.message_id, outcome=result.outcome.value,
                        error_code=result.error_code)
            return result
        text = email_text(msg)
        return SendResult(SendOutcome.SENT, provider_message_id=message_id, status="sent",
                          sent_text=text if text != msg.text else None,
                          extra={"smtp_reply": reply, **({"refused": {k: list(v) for k, v in refused.items()}}
                                                         if refused else {})})


def smtp_sender(s: Settings, **overrides) -> SmtpSender:
    """The SMTP sender from settings (`overrides` replace single arguments, e.g. an inbox's mailbox)."""
    args = dict(hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username, password=s.smtp_password,
                use_tls=s.smtp_tls == "tls", start_tls={"starttls": True, "none": False}.get(s.smtp_tls),
                timeout=s.smtp_timeout, from_address=s.email_from,
                message_id_domain=(s.email_from or "@localhost").split("@")[-1],
                unsubscribe_url_for=lambda msg: unsubscribe_url(s, msg.to))
    return SmtpSender(**{**args, **overrides})


def live_senders(rt: Runtime) -> dict[Channel, SmtpSender]:
    """SMTP when GATEWAY_SMTP_HOST is set."""
    return {Channel.EMAIL: smtp_sender(rt.settings)} if Channel.EMAIL in live_channels(rt.settings) else {}


# the outbox's last step for every email: threading headers, Reply-To, the From name
PREPARE = {Channel.EMAIL: prepare_outgoing}


def inbox_sender(s: Settings, http, fetcher, channel: Channel, address: str | None, creds: dict) -> SmtpSender | None:
    """The sender of a mailbox (its own SMTP server and login when it has credentials); None without
    credentials of its own while GATEWAY_SMTP_HOST is not set."""
    if not creds and not s.smtp_enabled:
        return None
    return smtp_sender(s, hostname=creds.get("host") or s.smtp_host,
                       port=int(creds.get("port") or s.smtp_port),
                       username=creds.get("username") or s.smtp_username,
                       password=creds.get("password") or s.smtp_password,
                       from_address=address or s.email_from,
                       message_id_domain=(address or s.email_from or "@localhost").split("@")[-1])


# inboxes whose provider is "smtp" send through `inbox_sender` (gateway.inboxes.senders)
INBOX_SENDERS = {"smtp": inbox_sender}

