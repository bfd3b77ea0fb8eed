"""Stored files (attachments of inbound mail, agents' uploads), kept once per content hash in `blobs`.

Retention (gateway.retention) and erasure (gateway.inbox.privacy) remove blobs no message refers to.
"""
from __future__ import annotations

import asyncpg


async def store_blob(conn: asyncpg.Connection, ref: str, content_type: str | None, data: bytes) -> None:
    """Store a file by its content ref (identical files are stored once). Storing one that is
    already there makes it young again: blobs are aged by their last use."""
    await conn.execute("""INSERT INTO blobs (ref, content_type, size, data) VALUES ($1, $2, $3, $4)
                          ON CONFLICT (ref) DO UPDATE SET created_at = now()""", ref, content_type, len(data), data)


async def blob(conn, ref: str) -> asyncpg.Record | None:
    """The stored file (data, content_type) by its content ref, or None. `conn` may be a pool."""
    return await conn.fetchrow("SELECT data, content_type FROM blobs WHERE ref = $1", ref)


async def message_attachments(conn, conversation_id: int, message_id: int) -> asyncpg.Record | None:
    """A message's channel, direction and content (its `attachments` list), or None when it is not
    in that conversation."""
    return await conn.fetchrow("""SELECT id, channel, direction, content FROM messages
                                  WHERE id = $1 AND conversation_id = $2""", message_id, conversation_id)


async def keep_attachment(conn: asyncpg.Connection, message_id: int, index: int, ref: str,
                          content_type: str | None, data: bytes) -> None:
    """Store a provider's media fetched on first access and point the message's attachment at it."""
    await store_blob(conn, ref, content_type, data)
    await conn.execute(
        """UPDATE messages SET content = jsonb_set(content, ARRAY['attachments', $2::text, 'content_ref'],
               to_jsonb($3::text)) WHERE id = $1""", message_id, str(index), ref)

