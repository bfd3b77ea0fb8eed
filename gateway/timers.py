"""Durable timers in PostgreSQL: journey waits, flow reply timeouts, snoozes.

Due timers are claimed with FOR UPDATE SKIP LOCKED by any number of workers, through the partial
index on due_at (firing costs what is due, not what is scheduled). A timer's handler runs inside a
savepoint of the claiming transaction and the timer is marked done in that same savepoint, so its
effects and its "done" commit together: a worker killed while firing leaves the timer pending and
another worker fires it, once.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

import asyncpg

from gateway.log import get_logger
from gateway.thread import Effects

log = get_logger(__name__)

TimerHandler = Callable[[asyncpg.Connection, asyncpg.Record, Effects], Awaitable[None]]
MAX_TIMER_ATTEMPTS = 5


class Clock:
    """Wall clock; tests substitute a controllable one."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock(Clock):
    def __init__(self, start: datetime):
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, when: datetime) -> None:
        self._now = when


async def schedule(conn: asyncpg.Connection, *, kind: str, due_at: datetime, payload: dict | None = None,
                   conversation_id: int | None = None, ref_id: int | None = None,
                   dedupe_key: str | None = None) -> int | None:
    """Schedule a timer; with a dedupe_key, scheduling twice keeps the first. Returns its id."""
    return await conn.fetchval(
        """INSERT INTO timers (kind, due_at, payload, conversation_id, ref_id, dedupe_key)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id""",
        kind, due_at, payload or {}, conversation_id, ref_id, dedupe_key)


async def cancel(conn: asyncpg.Connection, *, kind: str | None = None, conversation_id: int | None = None,
                 ref_id: int | None = None, dedupe_key: str | None = None) -> int:
    clauses, args = ["state = 'pending'"], []
    for column, value in (("kind", kind), ("conversation_id", conversation_id), ("ref_id", ref_id),
                          ("dedupe_key", dedupe_key)):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if len(clauses) == 1:
        raise ValueError("cancel needs at least one filter")
    result = await conn.execute(f"UPDATE timers SET state = 'cancelled' WHERE {' AND '.join(clauses)}", *args)
    return int(result.split()[-1])


class TimerService:
    def __init__(self, pool: asyncpg.Pool, handlers: dict[str, TimerHandler], *,
                 clock: Clock | None = None, batch: int = 200,
                 after_commit: Callable[[Effects], Awaitable[None]] | None = None):
        self.pool = pool
        self.handlers = handlers  # shared: plugins may register kinds after start
        self.clock = clock or Clock()
        self.batch = batch
        self.after_commit = after_commit
        self.fired = 0

    async def fire_due(self) -> int:
        """Fire one batch of due timers. Returns how many were claimed."""
        effects = Effects()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT * FROM timers WHERE state = 'pending' AND due_at <= $1
                   ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""", self.clock.now(), self.batch)
            for row in rows:
                await self._fire(conn, row, effects)
        if self.after_commit is not None and (effects.events or effects.wake_outbox):
            await self.after_commit(effects)
        return len(rows)

    async def _fire(self, conn: asyncpg.Connection, row: asyncpg.Record, effects: Effects) -> None:
        handler = self.handlers.get(row["kind"])
        try:
            async with conn.transaction():
                if handler is None:
                    raise LookupError(f"no handler for timer kind {row['kind']!r}")
                await handler(conn, row, effects)
                await conn.execute(
                    "UPDATE timers SET state = 'done', fired_at = $2, attempts = attempts + 1 WHERE id = $1",
                    row["id"], self.clock.now())
            self.fired += 1
        except Exception as exc:
            log.exception("timer failed", timer_id=row["id"], kind=row["kind"], error=str(exc))
            give_up = row["attempts"] + 1 >= MAX_TIMER_ATTEMPTS or handler is None
            await conn.execute(
                """UPDATE timers SET attempts = attempts + 1,
                       state = CASE WHEN $2 THEN 'cancelled' ELSE 'pending' END,
                       due_at = CASE WHEN $2 THEN due_at ELSE $3 END,
                       payload = payload || jsonb_build_object('last_error', $4::text)
                   WHERE id = $1""",
                row["id"], give_up, self.clock.now() + timedelta(seconds=5 * (row["attempts"] + 1)),
                str(exc)[:300])

    async def run(self, stop: asyncio.Event, poll_interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                n = await self.fire_due()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("timer pass failed", error=str(exc))
                n = 0
            if n:
                continue
            try:
                await asyncio.wait_for(stop.wait(), poll_interval)
            except asyncio.TimeoutError:
                pass
