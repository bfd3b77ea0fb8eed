"""Email into threads: thread lookup, attachment storage, bounces, unsubscribe tokens, SMTP listener.

An inbound mail joins a thread, in this order, by: the reply-address token (`reply+<token>@domain`),
its In-Reply-To/References matching one of our Message-IDs, and otherwise its sender's address, but
only when that address is authenticated (gateway.channels.email.sender_auth): unauthenticated mail
is stored, flagged, and never joins an existing contact's thread on its From address alone.
Everything (message, attachment contents, a bounce's status update) commits in one transaction.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Iterable

import asyncpg

from gateway.domain import contacts, status, thread
from gateway.domain.blobs import store_blob
from gateway.channels.email import (find_thread_token, iter_attachment_payloads, make_thread_token,
                                    parse_mime, parse_thread_token, reply_address)
from gateway.channels.errors import PayloadError
from gateway.infra.db import STORAGE_REFUSED
from gateway.channels.email.sender_auth import check_sender
from gateway.domain.identity import UNVERIFIED_EMAIL, AddressError, normalize_email
from gateway.pipeline.ingest import IngestResult, ingest_inbound
from gateway.domain.inputs import clean_inbound
from gateway.pipeline.intake import accepted, enqueue_committed
from gateway.app.log import get_logger
from gateway.app.sandbox_secrets import email_webhook_key
from gateway.domain.secret_keys import derive_key
from gateway.app.settings import Settings
from gateway.domain.types import Channel, Inbound, OutgoingMessage, StatusUpdate

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)


def thread_secret(settings: Settings) -> str:
    return derive_key(settings.secret_key, "email-thread").hex()


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


# -- outbound helpers ---------------------------------------------------------------------------

async def outbound_fields(conn: asyncpg.Connection, settings: Settings, conversation_id: int,
                          subject: str | None, *, author_type: str | None = None,
                          author_id: int | None = None) -> dict:
    """Subject, threading headers, Reply-To and the From display name for an email in this conversation.

    An agent's reply is from "Agent Name via Business" (GATEWAY_EMAIL_FROM_NAME; just the agent's
    name without it); anything else (bot, journey, system) from the business's name when set.
    """
    last = await conn.fetchrow(
        """SELECT content FROM messages WHERE conversation_id = $1 AND channel = 'email' AND direction = 'in'
           ORDER BY seq DESC LIMIT 1""", conversation_id)
    fields: dict = {}
    if last is not None:
        content = last["content"] or {}
        mid = (content.get("extra") or {}).get("message_id")
        if mid:
            fields["in_reply_to"] = mid
            fields["references"] = tuple(content.get("references", ())) + (mid,)
        theirs = content.get("subject") or ""
        if not subject and theirs:
            subject = theirs if theirs.lower().startswith("re:") else f"Re: {theirs}"
    fields["subject"] = subject or "Your conversation with us"
    if settings.email_reply_domain:
        token = make_thread_token(conversation_id, thread_secret(settings))
        fields["reply_to"] = reply_address(token, settings.email_reply_domain)
    business = settings.email_from_name
    agent = (await conn.fetchval("SELECT name FROM agents WHERE id = $1", author_id)
             if author_type == "agent" and author_id is not None else None)
    if agent:
        fields["sender_name"] = f"{agent} via {business}" if business else agent
    elif business:
        fields["sender_name"] = business
    return fields


async def prepare_outgoing(conn: asyncpg.Connection, settings: Settings, row, outgoing: OutgoingMessage) -> OutgoingMessage:
    """The outbox's last step for an email (gateway.pipeline.outbox.sender.PrepareOutgoing): `outbound_fields`."""
    fields = await outbound_fields(conn, settings, row["conversation_id"], outgoing.subject,
                                   author_type=row["author_type"], author_id=row["author_id"])
    return dataclasses.replace(outgoing, **fields)


# -- SMTP listener and simulation -------------------------------------------------------------

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


def simulated_mailgun_form(settings: Settings, *, sender: str, recipient: str, subject: str, text: str) -> dict:
    """A signed Mailgun forward() post, as `gateway simulate email` sends it."""
    import secrets
    import uuid

    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(email_webhook_key(settings).encode(), (timestamp + token).encode(),
                         hashlib.sha256).hexdigest()
    message_id = f"<{uuid.uuid4().hex}@simulate.local>"    # one per mail, in both places, or mails dedupe
    return {"recipient": recipient, "sender": sender, "from": sender, "subject": subject, "body-plain": text,
            "Message-Id": message_id, "timestamp": timestamp, "token": token,
            "signature": signature,
            # Mailgun's own SPF verdict, as it adds it to mail it received (the sender is "authenticated")
            "message-headers": json.dumps([["X-Mailgun-Spf", "Pass"], ["Message-Id", message_id],
                                           ["Subject", subject]])}


__all__ = ["accept_email", "find_thread_token", "outbound_fields", "start_smtp_listener"]
