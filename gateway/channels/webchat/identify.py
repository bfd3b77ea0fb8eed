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
from typing import TYPE_CHECKING

import asyncpg

from gateway.app.log import get_logger
from gateway.channels.webchat import tokens
from gateway.channels.webchat.hub import visitor_channel
from gateway.domain import contacts, thread
from gateway.infra import realtime
from gateway.infra.redis_client import shard_publish
from gateway.pipeline import queue

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

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


async def _one_contact(conn, ref: contacts.ContactRef, *, merge: bool, effects: thread.Effects) -> None:
    """The identifiers of a token naming several contacts (a phone of one, an email of another):
    merged into the first when `merge` (GATEWAY_CHAT_IDENTITY_CONFLICT=merge), else refused."""
    owners: list[int] = [ref.contact_id] if ref.contact_id is not None else []
    for kind, address in ref.identities():
        owner = await conn.fetchval("SELECT contact_id FROM identities WHERE kind = $1 AND address = $2",
                                    kind, address)
        if owner is not None and owner not in owners:
            owners.append(owner)
    if len(owners) < 2:
        return
    if not merge:
        raise tokens.TokenError("identity_conflict", "the identity token names identifiers of "
                                f"{len(owners)} different contacts ({', '.join(map(str, owners))}); "
                                "merge them first, or set GATEWAY_CHAT_IDENTITY_CONFLICT=merge")
    for other in owners[1:]:
        await merge_contacts(conn, other, owners[0], effects=effects,
                             reason=f"chat identity token named both contacts ({_describe(ref)})")


async def link_visitor(conn: asyncpg.Connection, visitor_id: str, ref: contacts.ContactRef, *,
                       effects: thread.Effects, merge_conflicts: bool = False) -> LinkResult:
    """Attach a visitor to the contact `ref` names (run inside a transaction). A token whose
    identifiers belong to several contacts merges them (`merge_conflicts`) or raises TokenError.

    Raises asyncpg.UniqueViolationError when the visitor's first message created their contact
    concurrently; the transaction is then simply retried.
    """
    await _one_contact(conn, ref, merge=merge_conflicts, effects=effects)
    current = await _contact_of_visitor(conn, visitor_id)
    previous_conv = await _conversation_of(conn, current) if current is not None else None
    known = await contacts.resolve(conn, ref, create=False)
    if current is not None and known == current:
        return LinkResult(known, previous_conv, previous_conv, None)   # already linked
    merged_from = None
    if current is None:
        known = known or await contacts.resolve(conn, ref)
        await contacts.attach_identity(conn, known, "chat", visitor_id)
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
        await contacts.move_identity(conn, "chat", visitor_id, known)
    conversation_id = await _conversation_of(conn, known)
    if conversation_id is not None and merged_from is None:
        await thread.add_event(conn, conversation_id, f"Chat visitor identified as {_describe(ref)}",
                               event="chat_identified", details={"visitor_id": visitor_id})
    return LinkResult(known, conversation_id, previous_conv, merged_from)


def _describe(ref: contacts.ContactRef) -> str:
    return ref.email or ref.phone or f"external id {ref.external_id}"


async def merge_contacts(conn: asyncpg.Connection, source_id: int, target_id: int, *,
                         effects: thread.Effects, reason: str = "contacts merged") -> int | None:
    """Fold contact `source_id` into `target_id` (inside the caller's transaction), with the inbox's
    merge (gateway.inbox.merge: identities, attributes, events and the thread, re-sequenced in time
    order). Open chat tabs of either thread get `conversation.merged` (their seqs changed) so they
    reset. Returns the target's conversation id (None when neither had a thread).
    """
    from gateway.inbox.merge import merge_contacts as merge

    if source_id == target_id:
        raise ValueError("cannot merge a contact into itself")
    source_conv = await conn.fetchval("SELECT id FROM conversations WHERE contact_id = $1", source_id)
    result = await merge(conn, target_id, source_id, effects)
    target_conv = result["conversation_id"]
    if source_conv is not None and target_conv is not None and source_conv != target_conv:
        for cid in (source_conv, target_conv):
            effects.emit("conversation.merged", conversation_id=cid, merged_from=source_conv,
                         merged_into=target_conv)
    return target_conv


async def identify(rt: Runtime, visitor_id: str, identity_token: str) -> LinkResult:
    """Verify the business's identity token and link the visitor; then tell their tabs and agents.

    Raises tokens.TokenError for a bad token or when identification is not configured.
    """
    ref = tokens.verify_identity(rt.settings.chat_identity_secret, identity_token)
    for attempt in (1, 2, 3):
        effects = thread.Effects()
        try:
            async with rt.pool.acquire() as conn, conn.transaction():
                result = await link_visitor(conn, visitor_id, ref, effects=effects,
                                            merge_conflicts=rt.settings.chat_identity_conflict == "merge")
            break
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            # a merge rewrites both threads' messages and outbox rows: an outbox finishing a send to
            # the visitor at that instant can deadlock with it; PostgreSQL aborts one, we run it again
            if attempt == 3:
                raise
    if result.conversation_id is not None:
        effects.emit("conversation.updated", conversation_id=result.conversation_id,
                     contact_id=result.contact_id, reason="chat_identified")
    await rt.publish_effects(effects)
    try:
        await shard_publish(rt.redis, visitor_channel(rt.keys, visitor_id), json.dumps({"type": "chat.rebind"}))
    except Exception as exc:  # tabs resync on their next event
        realtime.dropped(1, exc, "identify")
    if result.merged_from is not None and result.conversation_id is not None:
        # the merged thread may hold messages not processed yet
        await queue.enqueue_or_log(rt.redis, rt.keys, [result.conversation_id], why="chat visitor merged")
    log.info("chat visitor identified", contact_id=result.contact_id, conversation_id=result.conversation_id,
             merged=result.merged_from is not None)
    return result
