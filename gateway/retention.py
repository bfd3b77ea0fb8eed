"""Data retention: how long messages, attachments, events and audit entries are kept.

A worker-role timer (`Retention.run`) makes a pass every GATEWAY_RETENTION_INTERVAL seconds. Work
goes in small batches, each its own short transaction, with a pause between batches, so a pass
never holds a lock for long and runs beside live traffic (`gateway bench retention` measures the
inbox beside a pass).

- Messages older than their channel's limit (GATEWAY_RETENTION_CHANNEL_DAYS, else
  GATEWAY_RETENTION_MESSAGES_DAYS) become tombstones: the row keeps its place in the thread
  (conversation, seq, direction, channel, times, status) and loses its content, with the same
  redaction erasure uses (`privacy.redact_message_sql`), and `expired_at` is set. A message still at
  work (inbound not yet processed, outbound still being sent) is held back until it is done; each
  policy walks forward from a cursor over the created_at index (`retention_cursors`).
- Attachments (blobs) unused for GATEWAY_RETENTION_ATTACHMENTS_DAYS are deleted (storing a file
  again refreshes its age); without that setting, blobs go once every message that could refer to
  them has expired (the longest message limit, when every channel has one).
- Events and audit entries older than their limits are deleted, oldest first. (An integration
  retrying an event older than the limit is then taken as new.)
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from gateway.app.log import get_logger
from gateway.app.settings import Settings
from gateway.domain.timers import Clock
from gateway.inbox.privacy import redact_message_sql
from gateway.infra import periodic

log = get_logger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class MessagePolicy:
    """Messages of `channel` (None: every channel without a policy of its own) live `days` days."""
    name: str
    days: float
    channel: str | None = None
    others: tuple[str, ...] = ()        # the channels with their own policy (for the default one)


def parse_channel_days(spec: str) -> dict[str, float]:
    """"email=365,sms=90" -> {channel: days}; 0 keeps that channel's messages forever."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        channel, sep, days = part.partition("=")
        try:
            value = float(days)
        except ValueError:
            value = -1.0
        if not sep or not channel.strip() or value < 0:
            raise ValueError(f"{part!r} must look like channel=days (days 0 or more)")
        out[channel.strip().lower()] = value
    return out


def message_policies(s: Settings) -> list[MessagePolicy]:
    per_channel = parse_channel_days(s.retention_channel_days)
    policies = [MessagePolicy(f"messages:{ch}", days, ch) for ch, days in sorted(per_channel.items()) if days > 0]
    if s.retention_messages_days > 0:
        policies.append(MessagePolicy("messages", s.retention_messages_days, None, tuple(sorted(per_channel))))
    return policies


def blob_days(s: Settings) -> float:
    """How long an unused blob is kept (0: forever)."""
    if s.retention_attachments_days > 0:
        return s.retention_attachments_days
    per_channel = parse_channel_days(s.retention_channel_days)
    if s.retention_messages_days > 0 and all(d > 0 for d in per_channel.values()):
        return max([s.retention_messages_days, *per_channel.values()])
    return 0.0


def enabled(s: Settings) -> bool:
    return bool(message_policies(s) or blob_days(s) or s.retention_events_days > 0 or s.retention_audit_days > 0)


_CANDIDATES = """
SELECT id, created_at FROM messages
WHERE created_at >= $1 AND (created_at, id) > ($1, $2) AND created_at < $3 AND expired_at IS NULL
  AND (($4::text IS NULL AND channel <> ALL($5::text[])) OR channel = $4)
ORDER BY created_at, id LIMIT $6"""

_EXPIRE = f"""
WITH ready AS (
    SELECT m.id FROM messages m
    WHERE m.id = ANY($1::bigint[]) AND m.expired_at IS NULL
      AND (m.direction <> 'in' OR m.processed_at IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.state IN ('pending', 'sending'))
    FOR UPDATE SKIP LOCKED)
UPDATE messages m SET {redact_message_sql("''")}, expired_at = now()
FROM ready WHERE m.id = ready.id RETURNING m.id"""


class Retention:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, clock: Clock | None = None):
        self.pool = pool
        self.settings = settings
        self.clock = clock or Clock()
        self.batch = settings.retention_batch
        self.pause = settings.retention_pause

    async def run_once(self) -> dict[str, int]:
        """One pass over every policy, until each is caught up. Returns rows handled per kind."""
        s = self.settings
        done = {"messages": 0, "blobs": 0, "events": 0, "audit": 0}
        for policy in message_policies(s):
            done["messages"] += await self._expire_messages(policy)
        if days := blob_days(s):
            done["blobs"] = await self._delete_oldest("blobs", "ref", "created_at", days)
        if s.retention_events_days > 0:
            done["events"] = await self._delete_oldest("events", "id", "id", s.retention_events_days)
        if s.retention_audit_days > 0:
            done["audit"] = await self._delete_oldest("audit_log", "id", "created_at", s.retention_audit_days)
        if any(done.values()):
            log.info("retention pass", **done)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        await periodic.every(self.settings.retention_interval, stop, self.run_once, log=log,
                             failed="retention pass failed")

    def _cutoff(self, days: float) -> datetime:
        return self.clock.now() - timedelta(days=days)

    async def _expire_messages(self, policy: MessagePolicy) -> int:
        cutoff = self._cutoff(policy.days)
        expired = 0
        walk: tuple[datetime, int] | None = None        # where this pass has got to
        held_back: tuple[datetime, int] | None = None   # just before the first message still at work
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                cursor = await self._cursor(conn, policy.name)
                if cursor is None:
                    return expired            # another process is on this policy right now
                walk = walk or cursor
                candidates = await conn.fetch(_CANDIDATES, *walk, cutoff, policy.channel,
                                              list(policy.others), self.batch)
                if not candidates:
                    return expired
                finished = {r["id"] for r in await conn.fetch(_EXPIRE, [r["id"] for r in candidates])}
                if finished:
                    await conn.execute(
                        """UPDATE outbox SET payload = '{}'::jsonb, to_address = ''
                           WHERE message_id = ANY($1::bigint[]) AND state NOT IN ('pending', 'sending')""",
                        list(finished))
                if held_back is None:
                    # the cursor stays before a message still at work, so the next pass sees it again
                    # (the expired ones after it are passed over by expired_at)
                    held_back = next(((r["created_at"], r["id"] - 1) for r in candidates
                                      if r["id"] not in finished), None)
                walk = (candidates[-1]["created_at"], candidates[-1]["id"])
                await conn.execute(
                    "UPDATE retention_cursors SET position = $2, last_id = $3, updated_at = now() WHERE name = $1",
                    policy.name, *(held_back or walk))
            expired += len(finished)
            if len(candidates) < self.batch:
                return expired
            await asyncio.sleep(self.pause)

    @staticmethod
    async def _cursor(conn: asyncpg.Connection, name: str) -> tuple[datetime, int] | None:
        """This policy's cursor, locked for the batch (None: another process holds it)."""
        await conn.execute("INSERT INTO retention_cursors (name, position) VALUES ($1, $2) "
                           "ON CONFLICT (name) DO NOTHING", name, EPOCH)
        row = await conn.fetchrow(
            "SELECT position, last_id FROM retention_cursors WHERE name = $1 FOR UPDATE SKIP LOCKED", name)
        return (row["position"], row["last_id"]) if row else None

    async def _delete_oldest(self, table: str, key: str, order: str, days: float) -> int:
        """Delete rows older than `days`, oldest first (by `order`, an indexed column), a batch per
        transaction, until the oldest left is young enough."""
        cutoff = self._cutoff(days)
        total = 0
        while True:
            async with self.pool.acquire() as conn:
                status = await conn.execute(
                    f"""WITH oldest AS (SELECT {key}, created_at FROM {table} ORDER BY {order} LIMIT $2
                                        FOR UPDATE SKIP LOCKED)
                        DELETE FROM {table} t USING oldest
                        WHERE t.{key} = oldest.{key} AND oldest.created_at < $1""", cutoff, self.batch)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < self.batch:
                return total
            await asyncio.sleep(self.pause)
