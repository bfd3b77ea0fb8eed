"""Data-subject requests: export everything held about a contact, and erase a contact.

Erasure redacts the thread's content and the contact's attributes, removes identities and the
consent records naming them, and cancels anything still to be sent. An erased address that had
opted out keeps a suppression tombstone (a hash, not the address) so it is never messaged again,
even when it writes in later as a new contact.
"""
from __future__ import annotations

import asyncpg

from gateway import thread
from gateway.identity import address_hash
from gateway.inbox import NotFound

REDACTED = "[erased]"


async def export_contact(conn: asyncpg.Connection, contact_id: int) -> dict:
    contact = await conn.fetchrow(
        """SELECT id, name, external_id, attributes, locale, timezone, merged_into, erased_at, created_at, updated_at
           FROM contacts WHERE id = $1""", contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id}")
    identities = await conn.fetch(
        "SELECT kind, address, verified, created_at FROM identities WHERE contact_id = $1 ORDER BY id", contact_id)
    consents = await conn.fetch(
        """SELECT c.address_kind, c.address, c.channel, c.purpose, c.granted, c.source, c.updated_at
           FROM consents c JOIN identities i ON i.kind = c.address_kind AND i.address = c.address
           WHERE i.contact_id = $1 ORDER BY c.updated_at""", contact_id)
    merged = await conn.fetch("SELECT id FROM contacts WHERE merged_into = $1 ORDER BY id", contact_id)
    conversation = await conn.fetchrow(
        """SELECT id, status, mode, labels, flow_name, flow_state, flow_data, created_at
           FROM conversations WHERE contact_id = $1""", contact_id)
    out: dict = {
        "contact": dict(contact),
        "identities": [dict(r) for r in identities],
        "consents": [dict(r) for r in consents],
        "merged_contact_ids": [r["id"] for r in merged],
        "conversation": None, "episodes": [], "messages": [], "events": [],
    }
    if conversation is not None:
        cid = conversation["id"]
        out["conversation"] = {**dict(conversation), "labels": list(conversation["labels"])}
        out["episodes"] = [dict(r) for r in await conn.fetch(
            """SELECT id, opened_at, escalated_at, first_response_at, resolved_at, escalation_reason, channel
               FROM episodes WHERE conversation_id = $1 ORDER BY opened_at""", cid)]
        out["messages"] = [dict(r) for r in await conn.fetch(
            """SELECT seq, direction, kind, channel, sender_address, recipient_address, body, content, status,
                      author_type, created_at FROM messages WHERE conversation_id = $1 ORDER BY seq""", cid)]
    out["events"] = [dict(r) for r in await conn.fetch(
        "SELECT name, properties, occurred_at, source FROM events WHERE contact_id = $1 ORDER BY occurred_at",
        contact_id)]
    return out


async def erase_contact(conn: asyncpg.Connection, contact_id: int, effects: thread.Effects) -> dict:
    contact = await conn.fetchrow("SELECT * FROM contacts WHERE id = $1 FOR UPDATE", contact_id)
    if contact is None or contact["erased_at"] is not None:
        raise NotFound(f"contact {contact_id}")
    identities = await conn.fetch("SELECT kind, address FROM identities WHERE contact_id = $1", contact_id)
    tombstones = 0
    for ident in identities:
        opted_out = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM consents WHERE address_kind = $1 AND address = $2 AND NOT granted)",
            ident["kind"], ident["address"])
        if opted_out:
            await conn.execute(
                """INSERT INTO suppressions (address_hash, reason) VALUES ($1, 'erased_opted_out')
                   ON CONFLICT (address_hash) DO NOTHING""", address_hash(ident["kind"], ident["address"]))
            tombstones += 1
        await conn.execute("DELETE FROM consents WHERE address_kind = $1 AND address = $2",
                           ident["kind"], ident["address"])
    await conn.execute("DELETE FROM identities WHERE contact_id = $1", contact_id)
    await conn.execute(
        """UPDATE contacts SET name = NULL, external_id = NULL, attributes = '{}'::jsonb, locale = NULL,
               timezone = NULL, erased_at = now(), updated_at = now() WHERE id = $1""", contact_id)
    await conn.execute("UPDATE events SET properties = '{}'::jsonb WHERE contact_id = $1", contact_id)
    cid = await conn.fetchval("SELECT id FROM conversations WHERE contact_id = $1", contact_id)
    redacted = 0
    if cid is not None:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", cid)
        # system events such as "Opted out on sms (+1555...)" name the address: only their type stays
        result = await conn.execute(
            """UPDATE messages SET body = $2,
                   content = CASE WHEN kind = 'event' THEN jsonb_build_object('event', content->>'event')
                                  ELSE '{}'::jsonb END,
                   raw = NULL, sender_address = NULL, recipient_address = NULL, error_message = NULL
               WHERE conversation_id = $1""", cid, REDACTED)
        redacted = int(result.split()[-1])
        await conn.execute(
            """UPDATE outbox SET to_address = '', payload = '{}'::jsonb, last_error = 'contact erased',
                   state = CASE WHEN state = 'pending' THEN 'skipped' ELSE state END
               WHERE conversation_id = $1""", cid)
        await conn.execute(
            "UPDATE timers SET state = 'cancelled' WHERE conversation_id = $1 AND state = 'pending'", cid)
        await conn.execute(
            """UPDATE conversations SET status = 'resolved', flow_data = '{}'::jsonb, labels = '{}',
                   assignee_id = NULL, waiting_since = NULL, snoozed_until = NULL, updated_at = now()
               WHERE id = $1""", cid)
        await thread.add_event(conn, cid, "Contact erased on request", event="contact_erased")
        effects.emit("conversation.updated", conversation_id=cid, erased=True)
    return {"contact_id": contact_id, "conversation_id": cid, "identities_removed": len(identities),
            "suppressed_addresses": tombstones, "messages_redacted": redacted}
