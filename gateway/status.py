"""Delivery status: only moves forward.

queued < sent < delivered < read. failed/undelivered are terminal, except that a later
delivered/read wins over a stray failure; a failure never overwrites delivered or read.
"""
from __future__ import annotations

import asyncpg

_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
_FAILURES = {"failed", "undelivered"}


def next_status(current: str | None, new: str) -> str | None:
    """The status to store after `new` arrives, or None when `new` must be ignored."""
    if new not in _RANK and new not in _FAILURES:
        return None
    if current is None:
        return new
    if current in _FAILURES:
        return new if new in ("delivered", "read") else None
    if new in _FAILURES:
        return new if _RANK.get(current, 0) <= _RANK["sent"] else None
    return new if _RANK[new] > _RANK.get(current, -1) else None


async def apply_status(conn: asyncpg.Connection, *, channel: str, provider_message_id: str,
                       status: str, error_code: str | None = None,
                       error_message: str | None = None):
    """Apply a provider status report; returns (message row, new status) or None if ignored/unknown."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT id, conversation_id, status FROM messages
               WHERE channel = $1 AND provider_message_id = $2 AND direction = 'out'
               FOR UPDATE""", channel, provider_message_id)
        if row is None:
            return None
        new = next_status(row["status"], status)
        if new is None:
            return None
        await conn.execute(
            """UPDATE messages SET status = $2, status_updated_at = now(),
                   error_code = CASE WHEN $2 IN ('failed', 'undelivered') THEN $3 ELSE error_code END,
                   error_message = CASE WHEN $2 IN ('failed', 'undelivered') THEN $4 ELSE error_message END
               WHERE id = $1""", row["id"], new, error_code, error_message)
        return row, new
