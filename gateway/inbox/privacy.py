"""Data-subject requests: export everything held about a contact, and erase a contact.

Erasure covers the contact and every contact merged into it. It removes identities and the consent
records naming them; blanks the contact's name, external id and attributes; redacts every message of
their threads (body, content, raw payload, addresses, error texts; provider ids become hashes, since
an email's id holds the sender's address); deletes stored attachments no other message refers to;
empties event properties (event keys become hashes), journey data, outbox payloads and timer
payloads, cancelling anything still to be sent; and replaces erased values inside audit details.
An erased address that had opted out keeps a suppression tombstone (a hash, not the address) so it
is never messaged again, even when it writes in later as a new contact.
"""
from __future__ import annotations

import json

import asyncpg

from gateway.domain import consent, contacts, conversation, thread, timers
from gateway.inbox import NotFound, lock_contact_conversations
from gateway.pipeline.outbox import store as outbox_store

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
    history = await consent.contact_history(conn, contact_id)
    merged = await conn.fetch("SELECT id FROM contacts WHERE merged_into = $1 ORDER BY id", contact_id)
    conversation = await conn.fetchrow(
        """SELECT id, status, mode, labels, flow_name, flow_state, flow_data, created_at
           FROM conversations WHERE contact_id = $1""", contact_id)
    out: dict = {
        "contact": dict(contact),
        "identities": [dict(r) for r in identities],
        "consents": [dict(r) for r in consents],
        "consent_history": history,
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
    """Erase a contact (and the contacts merged into it): see the module docstring for what goes."""
    contact_ids = [contact_id, *[r["id"] for r in await conn.fetch(
        "SELECT id FROM contacts WHERE merged_into = $1 ORDER BY id", contact_id)]]
    conversation_ids = await lock_contact_conversations(conn, contact_ids)   # before any of their rows
    contact = await conn.fetchrow("SELECT * FROM contacts WHERE id = $1 FOR UPDATE", contact_id)
    if contact is None or contact["erased_at"] is not None:
        raise NotFound(f"contact {contact_id}")
    await conn.execute("SELECT 1 FROM contacts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", contact_ids)
    identities = await conn.fetch("SELECT kind, address FROM identities WHERE contact_id = ANY($1::bigint[])",
                                  contact_ids)
    people = await conn.fetch("SELECT name, external_id FROM contacts WHERE id = ANY($1::bigint[])", contact_ids)
    values = _erased_values([i["address"] for i in identities]
                            + [v for p in people for v in (p["name"], p["external_id"]) if v])
    tombstones = 0
    for ident in identities:
        tombstones += await consent.forget_address(conn, ident["kind"], ident["address"])
    await contacts.erase_identities(conn, contact_ids)
    await outbox_store.forget_addresses(conn, [i["address"] for i in identities])
    await contacts.erase_profiles(conn, contact_ids)
    # Event keys are chosen by integrations and may name the person: kept only as a hash, which
    # still makes a retried event a duplicate.
    await conn.execute(
        f"""UPDATE events SET properties = '{{}}'::jsonb, event_key = {_HASHED.format("event_key")}
            WHERE contact_id = ANY($1::bigint[]) AND event_key NOT LIKE 'erased:%'""", contact_ids)
    await conn.execute(
        """UPDATE journey_enrollments SET data = '{}'::jsonb WHERE contact_id = ANY($1::bigint[])""", contact_ids)
    await conn.execute(
        """UPDATE journey_skips SET details = '{}'::jsonb WHERE enrollment_id IN
               (SELECT id FROM journey_enrollments WHERE contact_id = ANY($1::bigint[]))""", contact_ids)
    cid = await conn.fetchval("SELECT id FROM conversations WHERE contact_id = $1", contact_id)
    redacted = blobs_removed = 0
    if conversation_ids:
        refs = [r["ref"] for r in await conn.fetch(
            """SELECT DISTINCT a->>'content_ref' AS ref FROM messages m,
                   jsonb_array_elements(CASE WHEN jsonb_typeof(m.content->'attachments') = 'array'
                                             THEN m.content->'attachments' ELSE '[]'::jsonb END) a
               WHERE m.conversation_id = ANY($1::bigint[]) AND a->>'content_ref' IS NOT NULL""", conversation_ids)]
        # system events such as "Opted out on sms (+1555...)" name the address: only their type stays.
        result = await conn.execute(
            f"""UPDATE messages SET {redact_message_sql("$2")}
               WHERE conversation_id = ANY($1::bigint[])""", conversation_ids, REDACTED)
        redacted = int(result.split()[-1])
        # a blob goes when no message anywhere refers to it any more (identical files are stored once)
        deleted = await conn.execute(
            """DELETE FROM blobs b WHERE b.ref = ANY($1::text[]) AND NOT EXISTS (
                   SELECT 1 FROM messages m WHERE m.content @> jsonb_build_object(
                       'attachments', jsonb_build_array(jsonb_build_object('content_ref', b.ref))))""", refs)
        blobs_removed = int(deleted.split()[-1])
        await conn.execute(
            """UPDATE outbox SET to_address = '', payload = '{}'::jsonb, last_error = 'contact erased',
                   state = CASE WHEN state = 'pending' THEN 'skipped' ELSE state END
               WHERE conversation_id = ANY($1::bigint[])""", conversation_ids)
        await timers.erase(conn, conversation_ids)
        await conversation.erase(conn, conversation_ids, REDACTED)
    # The audit trail keeps who did what; any erased value inside its details is replaced.
    for value in values:
        await conn.execute(
            """UPDATE audit_log SET details = replace(details::text, $2, '"[erased]"')::jsonb
               WHERE (contact_id = ANY($1::bigint[]) OR conversation_id = ANY($3::bigint[]))
                 AND strpos(details::text, $2) > 0""", contact_ids, json.dumps(value), conversation_ids)
    if cid is not None:
        await thread.add_event(conn, cid, "Contact erased on request", event="contact_erased")
        effects.emit("conversation.updated", conversation_id=cid, erased=True)
    return {"contact_id": contact_id, "conversation_id": cid, "identities_removed": len(identities),
            "suppressed_addresses": tombstones, "messages_redacted": redacted, "blobs_removed": blobs_removed}


# 'erased:' + sha256 of a column, in SQL
_HASHED = "'erased:' || encode(sha256(convert_to({}, 'UTF8')), 'hex')"


def redact_message_sql(body: str) -> str:
    """The SET list that empties a message but keeps its place in the thread (conversation, seq,
    direction, channel, times, status; a system event keeps its type): erasure and retention both
    use it. `body` is the SQL for the new body. Provider ids can carry the address (email:
    "sender|Message-ID"): kept only as a hash, so a provider retrying that message is still a duplicate."""
    return f"""body = {body},
        content = CASE WHEN kind = 'event' THEN jsonb_build_object('event', content->>'event') ELSE '{{}}'::jsonb END,
        raw = NULL, sender_address = NULL, recipient_address = NULL, error_message = NULL,
        provider_message_id = CASE WHEN provider_message_id LIKE 'erased:%' THEN provider_message_id
                                   ELSE {_HASHED.format("provider_message_id")} END"""


def _erased_values(values: list[str]) -> list[str]:
    """The values to scrub from free-form JSON: each one, and a phone number without its '+'."""
    out = set()
    for v in values:
        out.add(v)
        if v.startswith("+") and v[1:].isdigit():
            out.add(v[1:])
    return sorted(out, key=len, reverse=True)
