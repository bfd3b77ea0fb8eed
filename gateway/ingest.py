"""Ingest: one transaction takes a normalized Inbound to identity -> contact -> thread -> message.

The caller answers the provider 2xx only after this commits, then enqueues the conversation.
Duplicates (provider retries) are absorbed by the UNIQUE index on (channel, provider_message_id):
the loser of a race rolls back its savepoint, so no seq number is burnt and nothing is stored twice.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import asyncpg

from gateway.identity import Address, address_for
from gateway.types import Inbound


@dataclass(frozen=True)
class IngestResult:
    message_id: int
    conversation_id: int
    contact_id: int
    seq: int
    duplicate: bool


class _Lost(Exception):
    """Internal: a concurrent transaction won a unique race; roll back the savepoint."""


async def resolve_contact(conn: asyncpg.Connection, addr: Address, *, name: str | None = None) -> int:
    """The contact owning this identity, created with it when new (race-safe)."""
    found = await conn.fetchval(
        "SELECT contact_id FROM identities WHERE kind = $1 AND address = $2", addr.kind, addr.value)
    if found is not None:
        return found
    try:
        async with conn.transaction():
            contact_id = await conn.fetchval(
                "INSERT INTO contacts (name) VALUES ($1) RETURNING id", name)
            won = await conn.fetchval(
                """INSERT INTO identities (contact_id, kind, address) VALUES ($1, $2, $3)
                   ON CONFLICT (kind, address) DO NOTHING RETURNING contact_id""",
                contact_id, addr.kind, addr.value)
            if won is None:
                raise _Lost
            return contact_id
    except _Lost:
        return await conn.fetchval(
            "SELECT contact_id FROM identities WHERE kind = $1 AND address = $2", addr.kind, addr.value)


def inbound_content(inbound: Inbound) -> dict:
    """The normalized message, minus what has its own column, as JSON-able data."""
    content: dict = {}
    if inbound.attachments:
        content["attachments"] = [
            {k: v for k, v in dataclasses.asdict(a).items() if v is not None} for a in inbound.attachments]
    if inbound.location is not None:
        content["location"] = dataclasses.asdict(inbound.location)
    for name in ("reply_id", "reply_title", "in_reply_to", "thread_token", "subject", "full_text",
                 "html", "profile_name", "recipient"):
        value = getattr(inbound, name)
        if value:
            content[name] = value
    if inbound.references:
        content["references"] = list(inbound.references)
    if inbound.received_at is not None:
        content["provider_timestamp"] = inbound.received_at.isoformat()
    if inbound.auto_generated:
        content["auto_generated"] = True
    if inbound.extra:
        content["extra"] = dict(inbound.extra)
    return content


async def find_inbound(conn: asyncpg.Connection, channel: str, provider_message_id: str):
    return await conn.fetchrow(
        """SELECT m.id, m.conversation_id, m.seq, c.contact_id FROM messages m
           JOIN conversations c ON c.id = m.conversation_id
           WHERE m.channel = $1 AND m.provider_message_id = $2 AND m.direction = 'in'""",
        channel, provider_message_id)


async def ingest_inbound(conn: asyncpg.Connection, inbound: Inbound, *,
                         contact_id: int | None = None) -> IngestResult:
    """Store one inbound message in its contact's thread. Raises AddressError for bad senders.

    `contact_id` short-cuts identity resolution when the caller already knows the contact
    (e.g. an identified chat visitor).
    """
    channel = inbound.channel.value
    existing = await find_inbound(conn, channel, inbound.provider_message_id)
    if existing is not None:
        return IngestResult(existing["id"], existing["conversation_id"], existing["contact_id"],
                            existing["seq"], duplicate=True)
    if contact_id is None:
        addr = address_for(inbound.channel, inbound.sender, (inbound.extra or {}).get("address_kind"))
        contact_id = await resolve_contact(conn, addr, name=inbound.profile_name)
        sender_address = addr.value
    else:
        sender_address = inbound.sender
    try:
        async with conn.transaction():
            conv = await conn.fetchrow(
                """INSERT INTO conversations
                       (contact_id, last_seq, last_inbound_at, last_inbound_channel, last_message_at)
                   VALUES ($1, 1, now(), $2, now())
                   ON CONFLICT (contact_id) DO UPDATE SET
                       last_seq = conversations.last_seq + 1,
                       last_inbound_at = now(),
                       last_inbound_channel = EXCLUDED.last_inbound_channel,
                       last_message_at = now(),
                       updated_at = now()
                   RETURNING id, last_seq, current_episode_id""",
                contact_id, channel)
            message_id = await conn.fetchval(
                """INSERT INTO messages
                       (conversation_id, seq, episode_id, direction, channel, provider,
                        provider_message_id, sender_address, recipient_address, body, content,
                        author_type, raw)
                   VALUES ($1, $2, $3, 'in', $4, $5, $6, $7, $8, $9, $10, 'customer', $11)
                   ON CONFLICT (channel, provider_message_id)
                       WHERE provider_message_id IS NOT NULL AND direction = 'in'
                   DO NOTHING RETURNING id""",
                conv["id"], conv["last_seq"], conv["current_episode_id"], channel, inbound.provider,
                inbound.provider_message_id, sender_address, inbound.recipient, inbound.text,
                inbound_content(inbound), dict(inbound.raw) if inbound.raw else None)
            if message_id is None:
                raise _Lost
            return IngestResult(message_id, conv["id"], contact_id, conv["last_seq"], duplicate=False)
    except _Lost:
        existing = await find_inbound(conn, channel, inbound.provider_message_id)
        return IngestResult(existing["id"], existing["conversation_id"], existing["contact_id"],
                            existing["seq"], duplicate=True)
