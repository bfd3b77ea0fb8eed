"""Dead letters: outbound messages given up after their last attempt, listed and requeued.

Listing is newest first with keyset paging (`before_id`), optionally by channel or error code.
Requeueing puts the row back as a fresh send (attempts from zero, due now) and the message back to
`queued`; it keeps an unknown attempt's mark so a provider look-up still runs before resending.
The requeued message is again its conversation's oldest open one, so later messages wait for it.
"""
from __future__ import annotations

import asyncpg

from gateway.domain import thread

COLUMNS = """o.id AS outbox_id, o.message_id, o.conversation_id, m.seq, o.channel, o.to_address, o.purpose,
    o.attempts, o.last_error, m.error_code, m.error_message, o.created_at, o.updated_at AS dead_at"""


class NotDead(Exception):
    """The outbox row exists but is not dead-lettered (it is pending, sending or finished)."""


async def list_dead(conn: asyncpg.Connection, *, channel: str | None = None, error_code: str | None = None,
                    before_id: int | None = None, limit: int = 50) -> dict:
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM outbox o JOIN messages m ON m.id = o.message_id
            WHERE o.state = 'dead' AND ($1::text IS NULL OR o.channel = $1)
              AND ($2::text IS NULL OR m.error_code = $2) AND ($3::bigint IS NULL OR o.id < $3)
            ORDER BY o.id DESC LIMIT $4""", channel, error_code, before_id, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"dead_letters": [dict(r) for r in rows],
            "next_before_id": rows[-1]["outbox_id"] if more and rows else None}


async def requeue(conn: asyncpg.Connection, outbox_id: int, *, by: str) -> dict | None:
    """Send a dead letter again; None when there is no such row. Raises NotDead when not dead."""
    row = await conn.fetchrow(
        """UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL,
               claim_token = NULL, claimed_by = NULL, updated_at = now()
           WHERE id = $1 AND state = 'dead' RETURNING id, message_id, conversation_id, channel, to_address""",
        outbox_id)
    if row is None:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM outbox WHERE id = $1)", outbox_id):
            raise NotDead(outbox_id)
        return None
    seq = await conn.fetchval(
        """UPDATE messages SET status = 'queued', error_code = NULL, error_message = NULL, status_updated_at = now()
           WHERE id = $1 RETURNING seq""", row["message_id"])
    await thread.add_event(conn, row["conversation_id"], f"Message {seq} requeued for sending by {by}",
                           event="dead_letter_requeued", details={"message_id": row["message_id"],
                                                                  "outbox_id": outbox_id})
    return {"outbox_id": outbox_id, "message_id": row["message_id"], "conversation_id": row["conversation_id"],
            "state": "pending"}
