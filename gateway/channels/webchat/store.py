"""What a chat socket reads from PostgreSQL (the source of truth) and the receipts it writes.

Queries take a connection or a pool (anything with fetch/fetchrow), so they compose inside a
caller's transaction.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.domain.status import next_status

HISTORY_PAGE = 200


@dataclass(frozen=True)
class VisitorThread:
    contact_id: int | None
    conversation_id: int | None
    last_seq: int
    identified: bool       # the contact has an identity beyond chat visitor ids


async def visitor_thread(db, visitor_id: str) -> VisitorThread:
    """The contact and thread a visitor's chat identity belongs to (none before the first message)."""
    row = await db.fetchrow(
        """SELECT i.contact_id, c.id AS conversation_id, coalesce(c.last_seq, 0) AS last_seq,
                  EXISTS (SELECT 1 FROM identities o WHERE o.contact_id = i.contact_id
                          AND o.kind <> 'chat') AS identified
           FROM identities i LEFT JOIN conversations c ON c.contact_id = i.contact_id
           WHERE i.kind = 'chat' AND i.address = $1""", visitor_id)
    if row is None:
        return VisitorThread(None, None, 0, False)
    return VisitorThread(row["contact_id"], row["conversation_id"], row["last_seq"], row["identified"])


async def conversation_mode(db, conversation_id: int) -> str | None:
    """Who answers the conversation now (bot or agent): the socket shows the bot typing only for the bot."""
    return await db.fetchval("SELECT mode FROM conversations WHERE id = $1", conversation_id)


async def history(db, conversation_id: int, after_seq: int, limit: int = HISTORY_PAGE):
    """The customer-visible entries (messages in and out, any channel) newer than `after_seq`.

    Private notes and system events are never shown to the visitor.
    """
    return await db.fetch(
        """SELECT id, seq, direction, channel, body, content, author_type, created_at,
                  provider_message_id, status
           FROM messages WHERE conversation_id = $1 AND seq > $2 AND kind = 'message'
             AND direction IN ('in', 'out')
           ORDER BY seq LIMIT $3""", conversation_id, after_seq, limit)


async def advance_status(conn, conversation_id: int, status: str, *, up_to_seq: int | None = None,
                         message_ids: list[int] | None = None, on_change=None) -> list[tuple[int, str]]:
    """Move our chat messages' status forward (delivered when a tab got them, read when seen).

    Monotonic (gateway.domain.status decides). `on_change(conn, row, new_status)` runs for each changed
    row inside the same transaction (the runtime's status hooks: journeys wait for delivered/read).
    Returns (message id, new status) for the rows that changed.
    """
    async with conn.transaction():
        rows = await conn.fetch(
            """SELECT id, conversation_id, status FROM messages
               WHERE conversation_id = $1 AND direction = 'out' AND channel = 'webchat'
                 AND kind = 'message' AND ($2::bigint IS NULL OR seq <= $2)
                 AND ($3::bigint[] IS NULL OR id = ANY($3))
                 AND status IS DISTINCT FROM 'read'
               ORDER BY id FOR UPDATE""", conversation_id, up_to_seq, message_ids)
        changed = [(r, new) for r in rows if (new := next_status(r["status"], status))]
        if changed:
            await conn.execute(
                """UPDATE messages m SET status = c.status, status_updated_at = now()
                   FROM unnest($1::bigint[], $2::text[]) AS c(id, status) WHERE m.id = c.id""",
                [r["id"] for r, _ in changed], [new for _, new in changed])
        if on_change is not None:
            for row, new in changed:
                await on_change(conn, row, new)
    return [(r["id"], new) for r, new in changed]
