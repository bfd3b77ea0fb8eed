"""A fake SMTP relay on localhost: records every delivered message, can require AUTH, and can be
scripted to answer the next RCPT or DATA commands with a chosen reply (451 greylisting, 550...).

    async with FakeSmtpRelay() as relay:
        relay.fail_next_data(451)
        ... SmtpSender(hostname="127.0.0.1", port=relay.port, ...)
"""
from __future__ import annotations

import email
import email.policy
import warnings
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.channels.email.smtp_listener import InLoopSmtpServer

_DEFAULT_TEXT = {421: "4.3.2 Service not available", 450: "4.2.0 Mailbox busy",
                 451: "4.3.0 Temporary local problem, try again later",
                 452: "4.3.1 Insufficient storage", 550: "5.1.1 Mailbox unavailable",
                 552: "5.3.4 Message too big", 554: "5.7.1 Message rejected"}


@dataclass(frozen=True)
class RelayedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    auth_user: str | None = None


class _RelayHandler:
    def __init__(self, relay: FakeSmtpRelay):
        self.relay = relay

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.relay._rcpt_replies:
            return self.relay._rcpt_replies.popleft()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.relay._data_replies:
            return self.relay._data_replies.popleft()
        raw = envelope.original_content or b""
        self.relay.messages.append(RelayedMessage(
            mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos), raw=raw,
            message=email.message_from_bytes(raw, policy=email.policy.default),
            auth_user=session.auth_data.decode() if isinstance(session.auth_data, bytes) else None))
        return "250 Message accepted for delivery"


class _AuthWithoutTlsServer(InLoopSmtpServer):
    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without TLS; on localhost in tests that is the point.
            warnings.simplefilter("ignore")
            return super()._protocol()


class FakeSmtpRelay:
    """In-loop SMTP relay for tests. `credentials=(user, password)` makes AUTH mandatory."""

    def __init__(self, *, hostname: str = "127.0.0.1", port: int = 0,
                 credentials: tuple[str, str] | None = None):
        self.messages: list[RelayedMessage] = []
        self._data_replies: deque[str] = deque()
        self._rcpt_replies: deque[str] = deque()
        self.credentials = credentials
        options = {}
        if credentials:
            options = {"auth_required": True, "auth_require_tls": False,
                       "authenticator": self._authenticate}
        self._server = _AuthWithoutTlsServer(_RelayHandler(self), hostname=hostname, port=port,
                                             **options)

    @property
    def port(self) -> int:
        return self._server.port

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: object) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    @staticmethod
    def _reply(code: int, text: str | None) -> str:
        return f"{code} {text or _DEFAULT_TEXT.get(code, 'Scripted reply')}"

    def fail_next_data(self, code: int, text: str | None = None, *, times: int = 1) -> None:
        """Answer the next `times` DATA commands with `code` instead of accepting the message."""
        self._data_replies.extend([self._reply(code, text)] * times)

    def fail_next_rcpt(self, code: int, text: str | None = None, *, times: int = 1) -> None:
        """Refuse the next `times` RCPT TO commands with `code`."""
        self._rcpt_replies.extend([self._reply(code, text)] * times)

    async def start(self) -> int:
        return await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
