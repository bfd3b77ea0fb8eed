"""Delivery status: only moves forward.

queued < sent < delivered < read. failed/undelivered are terminal, except that a later
delivered/read wins over a stray failure (and clears its error); a failure never overwrites
delivered or read.

A provider can report a status before its answer to the send has reached us (Twilio may call back
before its 201 arrives): such a report is kept in `early_statuses` and applied once the outbox has
recorded the provider id (`apply_early`), for `EARLY_STATUS_TTL` at most.
"""
from __future__ import annotations

import asyncpg

from gateway.domain import consent, thread
from gateway.domain.identity import address_kind
from gateway.domain.types import Channel, StatusUpdate

EARLY_STATUS_TTL = "1 day"
OPT_OUT_ERROR_CODES = {"21610"}

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
                       error_message: str | None = None, keep_unmatched: bool = False,
                       recipient: str | None = None, provider: str | None = None):
    """Apply a provider status report; returns (message row, new status) or None if ignored/unknown.

    With `keep_unmatched`, a report for a provider id not (yet) recorded is kept for `apply_early`.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT id, conversation_id, status FROM messages
               WHERE channel = $1 AND provider_message_id = $2 AND direction = 'out'
               FOR UPDATE""", channel, provider_message_id)
        if row is None:
            if keep_unmatched and next_status(None, status) is not None:
                await conn.execute(
                    """INSERT INTO early_statuses (channel, provider, provider_message_id, status, error_code,
                                                   error_message, recipient)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    channel, provider, provider_message_id, status, error_code, error_message, recipient)
            return None
        new = next_status(row["status"], status)
        if new is None:
            return None
        await conn.execute(
            """UPDATE messages SET status = $2, status_updated_at = now(),
                   error_code = CASE WHEN $2 IN ('failed', 'undelivered') THEN $3
                                     WHEN $5 THEN NULL ELSE error_code END,
                   error_message = CASE WHEN $2 IN ('failed', 'undelivered') THEN $4
                                        WHEN $5 THEN NULL ELSE error_message END
               WHERE id = $1""", row["id"], new, error_code, error_message, row["status"] in _FAILURES)
        return row, new


async def record(conn: asyncpg.Connection, update: StatusUpdate, hooks, effects: thread.Effects, *,
                 keep_unmatched: bool = True):
    """Apply one provider status report with what follows from it: the realtime event, consent
    revoked on a provider opt-out code, status hooks (journeys). Returns what `apply_status` does."""
    applied = await apply_status(conn, channel=update.channel.value,
                                 provider_message_id=update.provider_message_id, status=update.status,
                                 error_code=update.error_code, error_message=update.error_message,
                                 keep_unmatched=keep_unmatched, recipient=update.recipient,
                                 provider=update.provider)
    if applied is None:
        return None
    row, new = applied
    effects.emit("message.status", conversation_id=row["conversation_id"], message_id=row["id"],
                 status=new, error_code=update.error_code)
    if update.error_code in OPT_OUT_ERROR_CODES and update.recipient:
        outcome = await consent.provider_opt_out(conn, kind=address_kind(update.channel, update.recipient),
                                                 address=update.recipient, channel=update.channel.value,
                                                 code=update.error_code)
        await thread.add_event(conn, row["conversation_id"], outcome.summary, event=outcome.event,
                               details=outcome.details)
    if hooks is not None:
        await hooks.on_status(conn, row, new, effects)
    return applied


async def apply_early(conn: asyncpg.Connection, hooks, effects: thread.Effects) -> int:
    """Apply kept reports whose provider id is now known (in arrival order); drop expired ones."""
    async with conn.transaction():
        rows = await conn.fetch(
            """DELETE FROM early_statuses e USING messages m
               WHERE m.channel = e.channel AND m.provider_message_id = e.provider_message_id
                 AND m.direction = 'out' RETURNING e.*""")
        for r in sorted(rows, key=lambda r: r["id"]):
            await record(conn, StatusUpdate(channel=Channel(r["channel"]), provider=r["provider"] or "",
                                            provider_message_id=r["provider_message_id"],
                                            status=r["status"], error_code=r["error_code"],
                                            error_message=r["error_message"], recipient=r["recipient"]),
                         hooks, effects, keep_unmatched=False)
        await conn.execute(f"DELETE FROM early_statuses WHERE received_at < now() - interval '{EARLY_STATUS_TTL}'")
    return len(rows)
