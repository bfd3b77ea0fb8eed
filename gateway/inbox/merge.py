"""Merging two contacts: one person who reached us twice (say by SMS and by email) becomes one.

Everything of the source moves to the target: identities, attributes it lacks, events, and its
thread, which interleaves with the target's in time order (seqs renumbered once, both threads
locked like the conversation worker locks them, so no message is processed meanwhile). The
source contact stays as a tombstone pointing at the target (`merged_into`).
"""
from __future__ import annotations

import asyncpg

from gateway.domain import contacts as contacts_owner
from gateway.domain import conversation, thread, timers
from gateway.inbox import Invalid, NotFound, lock_contact_conversations


async def merge_contacts(conn: asyncpg.Connection, target_id: int, source_id: int,
                         effects: thread.Effects) -> dict:
    """Merge `source_id` into `target_id`, inside the caller's transaction."""
    if target_id == source_id:
        raise Invalid("same_contact", "a contact cannot be merged into itself")
    await lock_contact_conversations(conn, [target_id, source_id])   # before the contacts' rows
    rows = await conn.fetch(
        "SELECT * FROM contacts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", [target_id, source_id])
    contacts = {r["id"]: r for r in rows}
    for cid in (target_id, source_id):
        if cid not in contacts or contacts[cid]["merged_into"] is not None or contacts[cid]["erased_at"]:
            raise NotFound(f"contact {cid}")
    target, source = contacts[target_id], contacts[source_id]
    convs = {r["contact_id"]: r for r in await conn.fetch(
        "SELECT * FROM conversations WHERE contact_id = ANY($1::bigint[])", [target_id, source_id])}

    moved_identities = await contacts_owner.move_all_identities(conn, source_id, target_id)
    await contacts_owner.merge_into(conn, target, source)
    await conn.execute("UPDATE events SET contact_id = $1 WHERE contact_id = $2", target_id, source_id)

    moved_messages = 0
    src_conv, dst_conv = convs.get(source_id), convs.get(target_id)
    if src_conv is not None and dst_conv is None:
        await conversation.move_to_contact(conn, src_conv["id"], target_id)
        dst_conv = src_conv
    elif src_conv is not None:
        moved_messages = await _merge_threads(conn, dst_conv, src_conv)
        effects.emit("conversation.updated", conversation_id=src_conv["id"], merged_into=dst_conv["id"])
    if dst_conv is not None:
        await thread.add_event(conn, dst_conv["id"], f"Contact {source_id} merged into this contact",
                               event="contacts_merged", details={"source_contact_id": source_id,
                                                                 "moved_messages": moved_messages})
        effects.emit("conversation.updated", conversation_id=dst_conv["id"], merged=True)
    return {"contact_id": target_id, "merged_contact_id": source_id,
            "conversation_id": dst_conv["id"] if dst_conv else None,
            "moved_identities": moved_identities, "moved_messages": moved_messages}


async def _merge_threads(conn, dst: asyncpg.Record, src: asyncpg.Record) -> int:
    d, s = dst["id"], src["id"]
    moved = await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", s)
    # park every seq on a unique negative value, then number the joined thread by time
    await conn.execute(
        "UPDATE messages SET conversation_id = $1, seq = -id WHERE conversation_id = ANY($2::bigint[])", d, [d, s])
    await conn.execute(
        """WITH ordered AS (
               SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM messages WHERE conversation_id = $1)
           UPDATE messages m SET seq = o.n FROM ordered o WHERE m.id = o.id""", d)
    for table in ("episodes", "outbox", "audit_log"):
        await conn.execute(f"UPDATE {table} SET conversation_id = $1 WHERE conversation_id = $2", d, s)
    await timers.move(conn, s, d)
    await conn.execute("UPDATE send_idempotency SET conversation_id = $1 WHERE conversation_id = $2", d, s)
    await conversation.absorb(conn, dst, src)
    return int(moved)
