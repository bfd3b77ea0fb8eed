"""Linking a chat visitor to a known contact, and merging two contacts' threads into one.

A visitor starts anonymous: a contact whose only identity is `chat:<visitor id>`. When the visitor
identifies (the business's signed identity token), their chat identity joins the known contact:

  - the visitor never wrote: the chat identity is attached to the known contact;
  - the visitor's contact is anonymous: it is merged into the known contact (identities move, the
    two threads become one, re-sequenced in time order);
  - the known contact does not exist yet: the anonymous contact simply gains the identity;
  - the visitor's contact is somebody else who identified before (a shared computer): only this
    visitor id moves; the other person's history stays theirs and is no longer shown here.

`merge_contacts` is the reusable half (the agents' inbox merges contacts too; see the report for
unifying the two).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from gateway import contacts, queue, realtime, thread
from gateway.channels.webchat import tokens
from gateway.channels.webchat.hub import visitor_channel
from gateway.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class LinkResult:
    contact_id: int
    conversation_id: int | None        # the visitor's thread now (None: nobody wrote yet)
    previous_conversation_id: int | None
    merged_from: int | None            # the anonymous contact merged away, if any


async def _contact_of_visitor(conn, visitor_id: str) -> int | None:
    return await conn.fetchval(
        "SELECT contact_id FROM identities WHERE kind = 'chat' AND address = $1 FOR UPDATE", visitor_id)


async def _is_anonymous(conn, contact_id: int) -> bool:
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM identities WHERE contact_id = $1 AND kind <> 'chat')", contact_id)


async def _conversation_of(conn, contact_id: int) -> int | None:
    return await conn.fetchval("SELECT id FROM conversations WHERE contact_id = $1", contact_id)


async def link_visitor(conn: asyncpg.Connection, visitor_id: str, ref: contacts.ContactRef, *,
                       effects: thread.Effects) -> LinkResult:
    """Attach a visitor to the contact `ref` names (run inside a transaction).

    Raises asyncpg.UniqueViolationError when the visitor's first message created their contact
    concurrently; the transaction is then simply retried.
    """
    current = await _contact_of_visitor(conn, visitor_id)
    previous_conv = await _conversation_of(conn, current) if current is not None else None
    known = await contacts.resolve(conn, ref, create=False)
    if current is not None and known == current:
        return LinkResult(known, previous_conv, previous_conv, None)   # already linked
    merged_from = None
    if current is None:
        known = known or await contacts.resolve(conn, ref)
        await conn.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'chat', $2)",
                           known, visitor_id)
    elif await _is_anonymous(conn, current):
        if known is None:   # first time we hear of this person: the visitor's contact becomes them
            known = await contacts.resolve(conn, contacts.ContactRef(
                contact_id=current, external_id=ref.external_id, phone=ref.phone, email=ref.email,
                name=ref.name))
        else:
            await merge_contacts(conn, current, known, effects=effects,
                                 reason=f"chat visitor identified as {_describe(ref)}")
            merged_from = current
    else:                   # somebody else used this browser before: move only this visitor id
        known = known or await contacts.resolve(conn, ref)
        await conn.execute("UPDATE identities SET contact_id = $2 WHERE kind = 'chat' AND address = $1",
                           visitor_id, known)
    conversation_id = await _conversation_of(conn, known)
    if conversation_id is not None and merged_from is None:
        await thread.add_event(conn, conversation_id, f"Chat visitor identified as {_describe(ref)}",
                               event="chat_identified", details={"visitor_id": visitor_id})
    return LinkResult(known, conversation_id, previous_conv, merged_from)


def _describe(ref: contacts.ContactRef) -> str:
    return ref.email or ref.phone or f"external id {ref.external_id}"


async def merge_contacts(conn: asyncpg.Connection, source_id: int, target_id: int, *,
                         effects: thread.Effects, reason: str = "contacts merged") -> int | None:
    """Fold contact `source_id` into `target_id` (inside the caller's transaction).

    Identities, events and the thread move to the target. When both have a thread, every entry of
    both is re-sequenced in time order into the target's thread and the source's is deleted; both
    threads' listeners get a `conversation.merged` event (their seqs changed). Returns the target's
    conversation id (None when neither had a thread).
    """
    if source_id == target_id:
        raise ValueError("cannot merge a contact into itself")
    # Same lock order as the processor (advisory lock, then the row), ids ascending: no deadlock.
    ids = await conn.fetch("SELECT id FROM conversations WHERE contact_id = ANY($1::bigint[]) ORDER BY id",
                           [source_id, target_id])
    for r in ids:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", r["id"])
    convs = {r["contact_id"]: r["id"] for r in await conn.fetch(
        "SELECT id, contact_id FROM conversations WHERE contact_id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
        [source_id, target_id])}
    source_conv, target_conv = convs.get(source_id), convs.get(target_id)
    await conn.execute("UPDATE identities SET contact_id = $2 WHERE contact_id = $1", source_id, target_id)
    await conn.execute("UPDATE events SET contact_id = $2 WHERE contact_id = $1", source_id, target_id)
    await conn.execute(
        """UPDATE contacts t SET name = coalesce(t.name, s.name), locale = coalesce(t.locale, s.locale),
               timezone = coalesce(t.timezone, s.timezone), attributes = s.attributes || t.attributes,
               updated_at = now()
           FROM contacts s WHERE s.id = $1 AND t.id = $2""", source_id, target_id)
    await conn.execute("UPDATE contacts SET merged_into = $2, updated_at = now() WHERE id = $1",
                       source_id, target_id)
    if source_conv is None:
        return target_conv
    if target_conv is None:
        await conn.execute("UPDATE conversations SET contact_id = $2, updated_at = now() WHERE id = $1",
                           source_conv, target_id)
        await conn.execute("UPDATE audit_log SET contact_id = $2 WHERE contact_id = $1", source_id, target_id)
        await thread.add_event(conn, source_conv, reason.capitalize(), event="contacts_merged",
                               details={"from_contact": source_id})
        return source_conv
    await _fold_threads(conn, source_conv, target_conv)
    await conn.execute("UPDATE audit_log SET contact_id = $2 WHERE contact_id = $1", source_id, target_id)
    await thread.add_event(conn, target_conv, reason.capitalize(), event="contacts_merged",
                           details={"from_contact": source_id, "from_conversation": source_conv})
    for cid in (source_conv, target_conv):
        effects.emit("conversation.merged", conversation_id=cid, merged_from=source_conv,
                     merged_into=target_conv)
    return target_conv


async def _fold_threads(conn: asyncpg.Connection, source: int, target: int) -> None:
    """Move every entry of thread `source` into `target`, re-sequenced by time; delete `source`."""
    # (conversation_id, seq) is UNIQUE and checked row by row: go through negative seqs, which no
    # live row ever has, then flip them positive.
    await conn.execute(
        """WITH ordered AS (
               SELECT id, row_number() OVER (ORDER BY created_at, seq, id) AS rn
               FROM messages WHERE conversation_id = ANY($1::bigint[]))
           UPDATE messages m SET conversation_id = $2, seq = -o.rn FROM ordered o WHERE m.id = o.id""",
        [source, target], target)
    await conn.execute("UPDATE messages SET seq = -seq WHERE conversation_id = $1 AND seq < 0", target)
    for table in ("outbox", "timers", "episodes", "audit_log"):
        await conn.execute(f"UPDATE {table} SET conversation_id = $2 WHERE conversation_id = $1", source, target)
    src = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1", source)
    await conn.execute(
        """UPDATE conversations t SET
               last_seq = (SELECT coalesce(max(seq), 0) FROM messages WHERE conversation_id = t.id),
               last_inbound_at = greatest(t.last_inbound_at, $2),
               last_inbound_channel = CASE WHEN $2 > t.last_inbound_at OR t.last_inbound_at IS NULL
                                           THEN coalesce($3, t.last_inbound_channel)
                                           ELSE t.last_inbound_channel END,
               last_message_at = greatest(t.last_message_at, $4),
               current_episode_id = coalesce(t.current_episode_id, $5),
               mode = CASE WHEN $6 = 'agent' THEN 'agent' ELSE t.mode END,
               status = CASE WHEN $6 = 'agent' AND $9 = 'open' THEN 'open' ELSE t.status END,
               waiting_since = least(t.waiting_since, $7),
               labels = ARRAY(SELECT DISTINCT unnest(t.labels || $8::text[])),
               updated_at = now()
           WHERE t.id = $1""",
        target, src["last_inbound_at"], src["last_inbound_channel"], src["last_message_at"],
        src["current_episode_id"], src["mode"], src["waiting_since"], src["labels"],
        src["status"])
    await conn.execute("DELETE FROM conversations WHERE id = $1", source)



async def identify(rt, visitor_id: str, identity_token: str) -> LinkResult:
    """Verify the business's identity token and link the visitor; then tell their tabs and agents.

    Raises tokens.TokenError for a bad token or when identification is not configured.
    """
    ref = tokens.verify_identity(rt.settings.chat_identity_secret, identity_token)
    for attempt in (1, 2):
        effects = thread.Effects()
        try:
            async with rt.pool.acquire() as conn, conn.transaction():
                result = await link_visitor(conn, visitor_id, ref, effects=effects)
            break
        except asyncpg.UniqueViolationError:
            if attempt == 2:
                raise
    if result.conversation_id is not None:
        effects.emit("conversation.updated", conversation_id=result.conversation_id,
                     contact_id=result.contact_id, reason="chat_identified")
    await realtime.publish(rt.redis, rt.keys, effects.events)
    try:
        await rt.redis.publish(visitor_channel(rt.keys, visitor_id), json.dumps({"type": "chat.rebind"}))
        if result.merged_from is not None and result.conversation_id is not None:
            # the merged thread may hold messages not processed yet
            await queue.enqueue(rt.redis, rt.keys, result.conversation_id)
    except Exception as exc:  # tabs resync on their next event; the sweeper finds unprocessed work
        log.warning("identify fan-out failed", error=str(exc))
    log.info("chat visitor identified", contact_id=result.contact_id, conversation_id=result.conversation_id,
             merged=result.merged_from is not None)
    return result
