"""Email into threads: thread lookup, attachment storage, bounces; the SMTP listener's start.

An inbound mail joins a thread, in this order, by: the reply-address token (`reply+<token>@domain`),
its In-Reply-To/References matching one of our Message-IDs, and otherwise its sender's address, but
only when that address is authenticated (gateway.channels.email.sender_auth): unauthenticated mail
is stored, flagged, and never joins an existing contact's thread on its From address alone.
Everything (message, attachment contents, a bounce's status update) commits in one transaction.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterable

import asyncpg

from gateway.app.log import get_logger
from gateway.app.settings import Settings
from gateway.channels.email import iter_attachment_payloads, parse_mime, parse_thread_token
from gateway.channels.email.outgoing import thread_secret
from gateway.channels.email.sender_auth import check_sender
from gateway.channels.errors import PayloadError
from gateway.domain import contacts, status, thread
from gateway.domain.blobs import store_blob
from gateway.domain.identity import UNVERIFIED_EMAIL, AddressError, normalize_email
from gateway.domain.inputs import clean_inbound
from gateway.domain.types import Channel, Inbound, StatusUpdate
from gateway.infra.db import STORAGE_REFUSED
from gateway.pipeline.ingest import IngestResult, ingest_inbound
from gateway.pipeline.intake import accepted, enqueue_committed

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)


async def _thread_contact(conn: asyncpg.Connection, inbound: Inbound, settings: Settings) -> int | None:
    """The contact whose thread this mail continues, or None (then: by sender)."""
    if inbound.thread_token:
        cid = parse_thread_token(inbound.thread_token, thread_secret(settings))
        if cid is not None:
            contact = await conn.fetchval("SELECT contact_id FROM conversations WHERE id = $1", cid)
            if contact is not None:
                return contact
        log.info("email thread token did not verify; threading by headers instead")
    ids = [i for i in (inbound.in_reply_to, *inbound.references) if i]
    if ids:
        return await conn.fetchval(
            """SELECT c.contact_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
               WHERE m.channel = 'email' AND m.direction = 'out' AND m.provider_message_id = ANY($1::text[])
               ORDER BY m.id DESC LIMIT 1""", ids)
    return None


async def _unverified_sender_contact(conn: asyncpg.Connection, inbound: Inbound) -> int | None:
    """Where mail whose From is not authenticated goes when nothing but that From names a thread.

    A From address nobody has yet: its own new contact, as usual (None). One that belongs to a
    contact: never that contact's thread (anyone can write any From), but a contact of its own for
    unauthenticated mail from that address (an UNVERIFIED_EMAIL identity, which no channel sends to,
    so no reply goes to a forged address); agents see it flagged and may merge it.
    """
    sender = inbound.sender
    if await conn.fetchval("SELECT contact_id FROM identities WHERE kind = 'email' AND address = $1", sender) is None:
        return None
    kept = await conn.fetchval("SELECT contact_id FROM identities WHERE kind = $1 AND address = $2",
                               UNVERIFIED_EMAIL, sender)
    if kept is not None:
        return kept
    log.info("unauthenticated email from a known address kept apart", channel="email")
    # a concurrent mail may create it first: then that contact
    return await contacts.create_with_identity(conn, UNVERIFIED_EMAIL, sender, name=inbound.profile_name,
                                               verified=False)


async def accept_email(rt: Runtime, inbound: Inbound, payloads: Iterable[tuple[str, bytes]] = ()) -> IngestResult:
    """Store one inbound email (deduped per sender and Message-ID) in the right thread.

    Raises InputError (gateway.domain.inputs: e.g. a NUL in the sender or Message-ID) or AddressError."""
    inbound = clean_inbound(inbound)
    sender = normalize_email(inbound.sender)
    message_id = inbound.provider_message_id
    inbound = dataclasses.replace(inbound, sender=sender, provider_message_id=f"{sender}|{message_id}")
    auth = check_sender(inbound, rt.settings.email_trusted_authserv_ids)
    inbound = dataclasses.replace(inbound, extra={**dict(inbound.extra or {}), "message_id": message_id,
                                                  "sender_auth": auth.as_dict()})
    effects = thread.Effects()
    async with rt.pool.acquire(timeout=5) as conn, conn.transaction():
        contact_id = await _thread_contact(conn, inbound, rt.settings)
        if contact_id is not None and auth.verified:
            await contacts.attach_identity(conn, contact_id, "email", sender, if_free=True)
        elif contact_id is None and not auth.verified:
            contact_id = await _unverified_sender_contact(conn, inbound)
        result = await ingest_inbound(conn, inbound, contact_id=contact_id)
        if not result.duplicate:
            content_types = {a.content_ref: a.content_type for a in inbound.attachments if a.content_ref}
            for ref, data in payloads:
                await store_blob(conn, ref, content_types.get(ref), data)
            await _apply_bounce(conn, rt, inbound, effects)
    await rt.publish_effects(effects)
    if not result.duplicate:
        await enqueue_committed(rt, [result.conversation_id])
    accepted("email", result)
    return result


async def _apply_bounce(conn: asyncpg.Connection, rt: Runtime, inbound: Inbound, effects: thread.Effects) -> None:
    """A delivery report (bounce) marks the message it names undelivered, like any status report:
    the realtime feed hears of it (after commit, from `effects`) and status hooks (journeys) run."""
    report = (inbound.extra or {}).get("report") or {}
    original = report.get("original_message_id")
    if not original:
        return
    details = "; ".join(f"{r.get('recipient')}: {r.get('status')} {r.get('diagnostic') or ''}".strip()
                        for r in report.get("recipients", []) if isinstance(r, dict))
    await status.record(conn, StatusUpdate(channel=Channel.EMAIL, provider="email", provider_message_id=original,
                                           status="undelivered", error_code="bounce",
                                           error_message=details[:500] or "bounced"),
                        rt.hooks, effects, keep_unmatched=False)


# -- the SMTP listener -------------------------------------------------------------

async def start(rt: Runtime):
    """The channel's background part: the inbound SMTP server, where GATEWAY_SMTP_LISTEN_PORT is set and
    this process serves HTTP (the role that takes customer messages in). Returns its closer or None."""
    if rt.settings.smtp_listen_port and "http" in rt.roles:
        return await start_smtp_listener(rt)
    return None


async def start_smtp_listener(rt: Runtime):
    """Receive customer mail by SMTP on GATEWAY_SMTP_LISTEN_PORT; returns an async closer."""
    from gateway.channels.email import InboundSmtpServer

    s = rt.settings

    async def on_message(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        """PayloadError (answered 550, never retried) for mail that cannot be stored as sent: a NUL
        in the body is cleaned away, a NUL in From or the Message-ID refuses the mail."""
        inbound = parse_mime(raw, envelope_from=mail_from, envelope_to=rcpt_tos, reply_domain=s.email_reply_domain)
        try:
            await accept_email(rt, inbound, iter_attachment_payloads(raw))
        except AddressError as exc:
            raise PayloadError(str(exc)) from None
        except STORAGE_REFUSED as exc:   # a value no check caught: still permanent, not "451 forever"
            log.warning("inbound mail refused by the database", error=type(exc).__name__)
            raise PayloadError("the message cannot be stored") from None

    server = InboundSmtpServer(on_message, hostname=s.smtp_listen_host, port=s.smtp_listen_port,
                               max_connections=s.smtp_listen_max_connections)
    port = await server.start()
    log.info("inbound SMTP listening", host=s.smtp_listen_host, port=port)
    return server.stop


__all__ = ["accept_email", "start", "start_smtp_listener"]
