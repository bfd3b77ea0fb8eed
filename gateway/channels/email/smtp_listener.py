"""Inbound SMTP: an aiosmtpd server inside the running asyncio loop (no Controller thread).

A message is acknowledged with 250 only after `on_message` returned, so the sending MTA keeps its
copy until we hold ours. PayloadError -> 550 (permanent, the MTA bounces it); any other error ->
451 (the MTA retries later).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Self

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.channels.errors import PayloadError

log = structlog.get_logger(__name__)

OnMessage = Callable[[bytes, str, list[str]], Awaitable[None]]
MAX_MESSAGE_SIZE = 25 * 1024 * 1024
MAX_CONNECTIONS = 16


class InLoopSmtpServer:
    """Runs aiosmtpd's SMTP protocol with `loop.create_server`; `start()` returns the bound port."""

    def __init__(self, handler: Any, *, hostname: str = "127.0.0.1", port: int = 0,
                 server_name: str = "localhost", max_connections: int = MAX_CONNECTIONS, **smtp_options: Any):
        self.handler = handler
        self.max_connections = max_connections
        self.hostname = hostname
        self.port = port
        # server_name avoids aiosmtpd's socket.getfqdn(), which can stall on a broken resolver.
        self._smtp_options = {"hostname": server_name, "enable_SMTPUTF8": True, **smtp_options}
        self._server: asyncio.Server | None = None
        self._connections: set[SMTP] = set()

    def _protocol(self) -> SMTP:
        smtp = _TrackedSMTP(self.handler, loop=asyncio.get_running_loop(), **self._smtp_options)
        smtp.connections = self._connections
        smtp.max_connections = self.max_connections
        return smtp

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.hostname, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for smtp in list(self._connections):
            if smtp.transport is not None:
                smtp.transport.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class _TrackedSMTP(SMTP):
    connections: set[SMTP]
    max_connections: int

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.connections) >= self.max_connections:
            # Each session may carry a message of up to max_message_size in memory: a few at a
            # time. 421 is a temporary refusal, so the sending MTA retries later.
            transport.write(b"421 4.3.2 Too many connections, try again later\r\n")  # type: ignore[attr-defined]
            transport.close()
            return
        self.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self not in self.connections:
            return   # refused in connection_made: the protocol never started
        self.connections.discard(self)
        super().connection_lost(error)


def _short(reason: str) -> str:
    text = " ".join(str(reason).split()).encode("ascii", "replace").decode()
    return text[:120] or "message rejected"


class _DeliveryHandler:
    def __init__(self, on_message: OnMessage, accept_recipient: Callable[[str], bool] | None):
        self.on_message = on_message
        self.accept_recipient = accept_recipient

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.accept_recipient is not None and not self.accept_recipient(address):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        mail_from = (envelope.mail_from or "").strip()
        try:
            # The null reverse-path (bounces) is passed as "", whatever form the client used.
            await self.on_message(raw, "" if mail_from == "<>" else mail_from, list(envelope.rcpt_tos))
        except PayloadError as exc:
            return f"550 5.6.0 {_short(str(exc))}"
        except Exception:
            log.exception("smtp_inbound_failed", peer=str(session.peer))
            return "451 Requested action aborted: local error"
        return "250 Message accepted for delivery"


class InboundSmtpServer(InLoopSmtpServer):
    """Receives customer mail by SMTP and hands (raw bytes, MAIL FROM, RCPT TOs) to `on_message`.

    `accept_recipient(address)` returning False refuses that RCPT TO with 550, e.g. for addresses
    outside our inbound domains, so we never accept mail we would have to bounce later.
    """

    def __init__(self, on_message: OnMessage, *, hostname: str = "127.0.0.1", port: int,
                 max_message_size: int = MAX_MESSAGE_SIZE, server_name: str = "localhost",
                 accept_recipient: Callable[[str], bool] | None = None, max_connections: int = MAX_CONNECTIONS):
        super().__init__(_DeliveryHandler(on_message, accept_recipient), hostname=hostname, port=port,
                         server_name=server_name, max_connections=max_connections,
                         data_size_limit=max_message_size)
