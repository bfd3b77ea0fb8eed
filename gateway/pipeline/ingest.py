"""Ingest: identity -> contact -> thread -> message, in the caller's transaction.

The work is done by the `gateway_ingest` SQL function (migrations/0002), one round trip for any
number of messages: a single webhook stores one, the group-commit batcher stores many. Duplicates
(provider retries) are absorbed by the UNIQUE index on (channel, provider_message_id) without
burning a seq number; concurrent first messages from one new customer make one contact.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import asyncpg

from gateway.app.log import get_logger
from gateway.domain.identity import Address, address_for
from gateway.domain.inputs import InputError, clean_inbound
from gateway.domain.types import Inbound
from gateway.inboxes.model import addresses_of
from gateway.infra.db import STORAGE_REFUSED

log = get_logger(__name__)


@dataclass(frozen=True)
class IngestResult:
    message_id: int
    conversation_id: int
    contact_id: int
    seq: int
    duplicate: bool
    inbox_id: int | None = None   # the inbox it was addressed to (gateway.inboxes)


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


def ingest_item(inbound: Inbound, contact_id: int | None = None) -> dict:
    """One element of gateway_ingest's input, checked and cleaned (gateway.domain.inputs.clean_inbound) so
    that it cannot fail the batch it joins. Raises InputError or AddressError for this item alone."""
    inbound = clean_inbound(inbound)
    if contact_id is None:
        addr = address_for(inbound.channel, inbound.sender, (inbound.extra or {}).get("address_kind"))
    else:
        addr = Address("", inbound.sender)
    return {
        "channel": inbound.channel.value, "provider": inbound.provider,
        "provider_message_id": inbound.provider_message_id, "kind": addr.kind, "address": addr.value,
        "name": inbound.profile_name, "contact_id": contact_id, "recipient": inbound.recipient,
        "body": inbound.text, "content": inbound_content(inbound), "inbox_addresses": addresses_of(inbound),
        "raw": dict(inbound.raw) if inbound.raw else None,
    }


async def ingest_items(conn: asyncpg.Connection, items: Sequence[dict]) -> list[IngestResult]:
    """Store `items` (from `ingest_item`) in one statement. A single item the database refuses
    raises InputError; a batch raises the database's error (the batcher then retries item by item)."""
    try:
        rows = await conn.fetch("SELECT * FROM gateway_ingest($1::jsonb)", list(items))
    except STORAGE_REFUSED as exc:
        if len(items) != 1:
            raise
        raise InputError(f"the message cannot be stored ({type(exc).__name__})", field="message",
                         code="unstorable") from exc
    rows = sorted(rows, key=lambda r: r["idx"])
    for item, r in zip(items, rows):
        if not r["inbox_matched"] and item.get("recipient"):
            log.warning("inbound to an address no inbox has; taken into the channel's default inbox",
                        channel=item["channel"], recipient=item["recipient"], message_id=r["message_id"])
    return [IngestResult(r["message_id"], r["conversation_id"], r["contact_id"], r["seq"], r["duplicate"],
                         r["inbox_id"]) for r in rows]


async def ingest_inbound(conn: asyncpg.Connection, inbound: Inbound, *,
                         contact_id: int | None = None) -> IngestResult:
    """Store one inbound message in its contact's thread. Raises AddressError for bad senders.

    `contact_id` short-cuts identity resolution when the caller already knows the contact
    (e.g. an identified chat visitor, an API contact reference).
    """
    return (await ingest_items(conn, [ingest_item(inbound, contact_id)]))[0]
