"""The outbox's SQL: owned claims, renewal, the attempt mark, finishing, orphan recovery.

Every write that ends or extends an attempt names the claim token it holds, so a sender that lost
its lease (it froze, another sender recovered the row) can never overwrite what the new owner did.
Query functions take the pool (or a connection) first; all times come from PostgreSQL's clock.
"""
from __future__ import annotations

import uuid

import asyncpg

from gateway.domain import consent

# A row may go only when every earlier row of its conversation is finished (done, failed, dead,
# skipped): the conversation's head. Anything else (batch sizes, retries, pauses) cannot reorder.
# The claim returns all a send needs: the message, the undeliverable mark and the consent facts
# of the recipient (read at claim time, a moment before the send).
CLAIM = f"""
WITH due AS (
    SELECT id FROM outbox o1
    WHERE state = 'pending' AND next_attempt_at <= coalesce($6, now()) AND channel = ANY($3::text[])
      AND NOT EXISTS (SELECT 1 FROM outbox o0 WHERE o0.conversation_id = o1.conversation_id
                      AND o0.id < o1.id AND o0.state IN ('pending', 'sending'))
    ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE outbox o SET state = 'sending', attempts = o.attempts + 1, claim_token = $4, claimed_by = $5,
        locked_until = now() + make_interval(secs => $2), updated_at = now()
    FROM due WHERE o.id = due.id RETURNING o.*)
SELECT c.*, m.body, m.content, m.seq, m.author_type, m.author_id, m.inbox_id, m.sender_address AS from_address,
       u.error_code AS undeliverable_code, consent_facts.*
FROM claimed c JOIN messages m ON m.id = c.message_id
LEFT JOIN undeliverable_addresses u ON u.channel = c.channel AND u.address = c.to_address
{consent.facts_join("c.payload->>'kind'", "c.to_address", "c.channel")}
ORDER BY c.id"""


async def claim(pool, *, limit: int, lease: float, channels: list[str], owner: str,
                due_by=None) -> list[asyncpg.Record]:
    """Lease up to `limit` conversation heads due (by `due_by`, default now) on `channels`."""
    if limit <= 0 or not channels:
        return []
    return await pool.fetch(CLAIM, limit, lease, channels, uuid.uuid4(), owner, due_by)


async def heartbeat(pool, owner: str, lease: float, held: list[tuple[int, uuid.UUID]]) -> set[int]:
    """Say this sender is alive and extend the leases it holds; returns the ids it still owns."""
    rows = await pool.fetch(
        """WITH beat AS (INSERT INTO outbox_senders (name) VALUES ($1)
                         ON CONFLICT (name) DO UPDATE SET heartbeat_at = now())
           UPDATE outbox o SET locked_until = now() + make_interval(secs => $2)
           FROM unnest($3::bigint[], $4::uuid[]) AS h(id, token)
           WHERE o.id = h.id AND o.claim_token = h.token AND o.state = 'sending' RETURNING o.id""",
        owner, lease, [i for i, _ in held], [t for _, t in held])
    return {r["id"] for r in rows}


async def forget_sender(pool, owner: str) -> None:
    await pool.execute("DELETE FROM outbox_senders WHERE name = $1", owner)


async def recover_orphans(pool, orphan_after: float, lease: float) -> int:
    """Put back rows whose lease ran out or whose sender stopped beating (killed, frozen, stopped).

    A row whose provider call started less than a lease ago stays with its sender even when the
    heartbeat is late: a sender that is only slow may still be waiting for that answer, and taking
    the row over now could send it twice. `attempt_started_at` stays: if the dead sender had called
    the provider, the next attempt looks the message up there before sending again (where it can).
    """
    result = await pool.execute(
        """UPDATE outbox o SET state = 'pending', locked_until = NULL, claim_token = NULL, claimed_by = NULL,
               updated_at = now()
           WHERE state = 'sending' AND (locked_until < now() OR (
               NOT EXISTS (SELECT 1 FROM outbox_senders s WHERE s.name = o.claimed_by
                           AND s.heartbeat_at > now() - make_interval(secs => $1))
               AND (attempt_started_at IS NULL OR attempt_started_at < now() - make_interval(secs => $2))))""",
        orphan_after, lease)
    await pool.execute("DELETE FROM outbox_senders WHERE heartbeat_at < now() - interval '1 day'")
    return int(result.split()[-1])


async def mark_attempts(pool, held: list[tuple[int, uuid.UUID]]) -> set[int]:
    """The durable "attempt started" mark, written just before the provider calls; returns the ids
    still owned (a row whose lease was lost must not be sent)."""
    rows = await pool.fetch(
        """UPDATE outbox o SET attempt_started_at = now() FROM unnest($1::bigint[], $2::uuid[]) AS h(id, token)
           WHERE o.id = h.id AND o.claim_token = h.token AND o.state = 'sending' RETURNING o.id""",
        [i for i, _ in held], [t for _, t in held])
    return {r["id"] for r in rows}


async def recent_provider_ids(pool, row, since) -> set[str]:
    """Provider ids already recorded for this conversation's messages on the row's channel around
    `since`: a look-up at the provider must not take one of them for the row's own message."""
    rows = await pool.fetch(
        """SELECT provider_message_id FROM messages WHERE conversation_id = $1 AND channel = $2
               AND direction = 'out' AND provider_message_id IS NOT NULL
               AND status_updated_at > $3::timestamptz - interval '1 hour'""",
        row["conversation_id"], row["channel"], since)
    return {r["provider_message_id"] for r in rows}


async def release(pool, row, delay: float, *, count_attempt: bool) -> bool:
    """Give a claimed row back (its sender is paused, or the send crashed) to retry after `delay`."""
    result = await pool.execute(
        """UPDATE outbox SET state = 'pending', locked_until = NULL, claim_token = NULL, claimed_by = NULL,
               attempts = attempts - CASE WHEN $4 THEN 0 ELSE 1 END,
               next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
           WHERE id = $1 AND claim_token = $2 AND state = 'sending'""",
        row["id"], row["claim_token"], delay, count_attempt)
    return result.endswith(" 1")


async def schedule_retry(pool, row, delay: float, error: str, *, outcome_unknown: bool) -> bool:
    """Back to pending after a transient failure. When the provider may have accepted the attempt
    (timeout, dropped connection) the attempt mark stays so the retry looks it up first."""
    result = await pool.execute(
        """UPDATE outbox SET state = 'pending', locked_until = NULL, claim_token = NULL, claimed_by = NULL,
               last_error = $3, next_attempt_at = now() + make_interval(secs => $4), updated_at = now(),
               attempt_started_at = CASE WHEN $5 THEN attempt_started_at END
           WHERE id = $1 AND claim_token = $2 AND state = 'sending'""",
        row["id"], row["claim_token"], error, delay, outcome_unknown)
    return result.endswith(" 1")


# Closes rows and records their outcomes on their messages in one statement. A row is finished only
# by the holder of its claim token, except that an accepted send is recorded by whoever got it while
# the row is still open (so a slow owner's success is never resent by the next owner).
FINISH = """
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::int[], $9::uuid[], $10::text[])
        AS f(id, state, status, provider_message_id, error_code, error_message, last_error, segments, token,
             sent_text)),
done AS (
    UPDATE outbox o SET state = f.state, locked_until = NULL, claim_token = NULL, claimed_by = NULL,
        attempt_started_at = NULL, updated_at = now(), last_error = coalesce(f.last_error, o.last_error)
    FROM f WHERE o.id = f.id AND o.state IN ('pending', 'sending')
        AND (o.claim_token = f.token OR (f.state = 'done' AND f.provider_message_id IS NOT NULL))
    RETURNING o.id, o.message_id)
UPDATE messages m SET status = CASE WHEN m.status IN ('delivered', 'read') THEN m.status ELSE f.status END,
    provider_message_id = coalesce(f.provider_message_id, m.provider_message_id),
    error_code = f.error_code, error_message = f.error_message, segments = coalesce(f.segments, m.segments),
    status_updated_at = now(),
    content = CASE WHEN f.sent_text IS NULL THEN m.content
                   ELSE coalesce(m.content, '{}'::jsonb) || jsonb_build_object('sent_text', f.sent_text) END
FROM done JOIN f ON f.id = done.id
WHERE m.id = done.message_id RETURNING done.id"""

OUTCOME_FIELDS = ("state", "status", "provider_message_id", "error_code", "error_message", "segments", "sent_text")


async def finish_many(conn, finished: list[tuple[asyncpg.Record, dict]]) -> set[int]:
    """Close many rows with their outcomes ((row, outcome) pairs, the outcome as `finish` takes it)
    in one statement; returns the ids this sender still owned (or recorded as accepted)."""
    if not finished:
        return set()
    columns: dict[str, list] = {name: [] for name in OUTCOME_FIELDS}
    for _, outcome in finished:
        for name in OUTCOME_FIELDS:
            columns[name].append(outcome.get(name))
    last_errors = [f"{code}: {message}" if code else None
                   for code, message in zip(columns["error_code"], columns["error_message"])]
    rows = await conn.fetch(
        FINISH, [row["id"] for row, _ in finished], columns["state"], columns["status"],
        columns["provider_message_id"], columns["error_code"], columns["error_message"], last_errors,
        columns["segments"], [row["claim_token"] for row, _ in finished], columns["sent_text"])
    return {r["id"] for r in rows}


async def finish(conn, row, *, state: str, status: str, provider_message_id: str | None = None,
                 error_code: str | None = None, error_message: str | None = None,
                 segments: int | None = None, sent_text: str | None = None) -> bool:
    """Close the row with its outcome; False when this sender no longer owned it.

    `sent_text` (what the provider got, when the channel rendered it differently, e.g. buttons as
    a numbered menu) is kept on the message as content.sent_text.
    """
    outcome = {"state": state, "status": status, "provider_message_id": provider_message_id,
               "error_code": error_code, "error_message": error_message, "segments": segments,
               "sent_text": sent_text}
    return row["id"] in await finish_many(conn, [(row, outcome)])


async def mark_undeliverable(conn, channel: str, address: str, error_code: str, error_message: str | None) -> None:
    await conn.execute(
        """INSERT INTO undeliverable_addresses (channel, address, error_code, error_message)
           VALUES ($1, $2, $3, $4) ON CONFLICT (channel, address) DO UPDATE
           SET error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message, created_at = now()""",
        channel, address, error_code, error_message)


async def forget_addresses(conn, addresses: list[str]) -> None:
    """Erasure: drop what the outbox keeps about these addresses (invalid-number marks, early statuses)."""
    await conn.execute("DELETE FROM undeliverable_addresses WHERE address = ANY($1::text[])", addresses)
    await conn.execute("DELETE FROM early_statuses WHERE recipient = ANY($1::text[])", addresses)
