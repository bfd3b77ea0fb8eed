"""Durable timers in PostgreSQL: journey waits, flow reply timeouts, snoozes.

Due timers are claimed in batches with FOR UPDATE SKIP LOCKED by any number of workers, through
the partial index on due_at (firing costs what is due, not what is scheduled). Handlers run inside
savepoints of the claiming transaction and the batch's timers are marked done in that same
transaction (one statement), so effects and "done" commit together: a worker killed while firing
leaves its timers pending and another worker fires them, once.

A handler takes one timer; a `Batch` handler takes all the claimed timers of its kind at once and
works set-based. When a batch handler fails, its savepoint is rolled back and each of its timers is
retried alone, so one bad timer fails alone.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping, Sequence

import asyncpg

from gateway.app.log import get_logger
from gateway.domain.types import Effects

log = get_logger(__name__)

TimerHandler = Callable[[asyncpg.Connection, asyncpg.Record, Effects], Awaitable[None]]
MAX_TIMER_ATTEMPTS = 5

CLAIM = """SELECT * FROM timers WHERE state = 'pending' AND due_at <= $1
           ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED"""


@dataclass(frozen=True)
class Batch:
    """A timer handler that takes every claimed timer of its kind at once (set-based SQL)."""

    handler: Callable[[asyncpg.Connection, list[asyncpg.Record], Effects], Awaitable[None]]

    async def __call__(self, conn: asyncpg.Connection, timer: asyncpg.Record, effects: Effects) -> None:
        await self.handler(conn, [timer], effects)


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


def _pending(args: list, *, kind: str | None, conversation_id: int | None, ref_id: int | None,
             dedupe_key: str | None, payload: Mapping[str, Any] | None) -> str:
    """WHERE for pending timers matching every filter given; `args` receives the parameters."""
    clauses = ["state = 'pending'"]
    for column, value in (("kind", kind), ("conversation_id", conversation_id), ("ref_id", ref_id),
                          ("dedupe_key", dedupe_key)):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    for key, value in (payload or {}).items():
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        args += [key, [str(v) for v in values]]
        clauses.append(f"payload->>${len(args) - 1} = ANY(${len(args)}::text[])")
    if len(clauses) == 1:
        raise ValueError("a timer filter needs at least one condition")
    return " AND ".join(clauses)


async def cancel(conn: asyncpg.Connection, *, kind: str | None = None, conversation_id: int | None = None,
                 ref_id: int | None = None, dedupe_key: str | None = None,
                 payload: Mapping[str, Any] | None = None) -> int:
    """Cancel the pending timers matching every filter given (`payload`: {key: value or values}).
    Returns how many."""
    args: list = []
    where = _pending(args, kind=kind, conversation_id=conversation_id, ref_id=ref_id, dedupe_key=dedupe_key,
                     payload=payload)
    result = await conn.execute(f"UPDATE timers SET state = 'cancelled' WHERE {where}", *args)
    return int(result.split()[-1])


async def replace(conn: asyncpg.Connection, *, kind: str, conversation_id: int, payload: Mapping[str, Any],
                  timers: Sequence[tuple[datetime, dict]]) -> None:
    """Cancel the conversation's pending timers of `kind` matching `payload` and schedule `timers`
    ((due_at, payload) each) in their stead, in one statement."""
    sql, args = replace_statement(kind=kind, conversation_id=conversation_id, payload=payload, timers=timers)
    await conn.execute(sql, *args)


def replace_statement(*, kind: str, conversation_id: int, payload: Mapping[str, Any],
                      timers: Sequence[tuple[datetime, dict]]) -> tuple[str, tuple]:
    """The statement `replace` runs (a batch of turns runs those of the same text together)."""
    args: list = []
    where = _pending(args, kind=kind, conversation_id=conversation_id, ref_id=None, dedupe_key=None,
                     payload=payload)
    n = len(args)
    args += [kind, conversation_id, [due for due, _ in timers], [p for _, p in timers]]
    return (f"""WITH cancelled AS (UPDATE timers SET state = 'cancelled' WHERE {where})
                INSERT INTO timers (kind, due_at, payload, conversation_id)
                SELECT ${n + 1}, t.due_at, t.payload, ${n + 2}
                FROM unnest(${n + 3}::timestamptz[], ${n + 4}::jsonb[]) AS t(due_at, payload)""", tuple(args))


async def bring_forward(conn: asyncpg.Connection, due_at: datetime, *, kind: str | None = None,
                        conversation_id: int | None = None, ref_id: int | None = None,
                        payload: Mapping[str, Any] | None = None) -> None:
    """Pending timers matching the filters fire by `due_at` at the latest."""
    args: list = [due_at]
    where = _pending(args, kind=kind, conversation_id=conversation_id, ref_id=ref_id, dedupe_key=None,
                     payload=payload)
    await conn.execute(f"UPDATE timers SET due_at = least(due_at, $1) WHERE {where}", *args)


async def erase(conn: asyncpg.Connection, conversation_ids: list[int]) -> None:
    """An erased contact's timers: their payloads emptied, the pending ones cancelled."""
    await conn.execute(
        """UPDATE timers SET payload = '{}'::jsonb,
               state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END
           WHERE conversation_id = ANY($1::bigint[])""", conversation_ids)


async def move(conn: asyncpg.Connection, from_conversation: int, to_conversation: int) -> None:
    """Two threads became one (contacts merged): the timers go with them."""
    await conn.execute("UPDATE timers SET conversation_id = $2 WHERE conversation_id = $1",
                       from_conversation, to_conversation)


async def purge(conn: asyncpg.Connection, kind: str) -> None:
    """Delete every timer of a kind (a benchmark cleaning up after itself)."""
    await conn.execute("DELETE FROM timers WHERE kind = $1", kind)


class TimerService:
    def __init__(self, pool: asyncpg.Pool, handlers: dict[str, TimerHandler | Batch], *,
                 clock: Clock | None = None, batch: int = 500,
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
            rows = await conn.fetch(CLAIM, self.clock.now(), self.batch)
            by_kind: dict[str, list[asyncpg.Record]] = {}
            for row in rows:
                by_kind.setdefault(row["kind"], []).append(row)
            done: list[int] = []
            for kind, group in by_kind.items():
                handler = self.handlers.get(kind)
                if isinstance(handler, Batch) and len(group) > 1 and await self._fire_batch(conn, handler, group,
                                                                                             effects):
                    done.extend(row["id"] for row in group)
                    continue
                for row in group:
                    if await self._fire(conn, row, effects):
                        done.append(row["id"])
            if done:
                await conn.execute(
                    "UPDATE timers SET state = 'done', fired_at = $2, attempts = attempts + 1 WHERE id = ANY($1)",
                    done, self.clock.now())
                self.fired += len(done)
        if self.after_commit is not None and (effects.events or effects.wake_outbox):
            await self.after_commit(effects)
        return len(rows)

    async def _fire_batch(self, conn: asyncpg.Connection, handler: Batch, rows: list[asyncpg.Record],
                          effects: Effects) -> bool:
        """All of one kind's timers in one savepoint; False (rolled back) when the handler failed."""
        mine = Effects()
        try:
            async with conn.transaction():
                await handler.handler(conn, rows, mine)
        except Exception as exc:
            log.warning("timer batch failed; firing its timers one by one", kind=rows[0]["kind"],
                        timers=len(rows), error=str(exc))
            return False
        effects.extend(mine)   # a rolled-back savepoint's effects are never published
        return True

    async def _fire(self, conn: asyncpg.Connection, row: asyncpg.Record, effects: Effects) -> bool:
        """One timer in its own savepoint; True when it fired (the caller marks it done)."""
        handler = self.handlers.get(row["kind"])
        mine = Effects()
        try:
            async with conn.transaction():
                if handler is None:
                    raise LookupError(f"no handler for timer kind {row['kind']!r}")
                await handler(conn, row, mine)
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
            return False
        effects.extend(mine)   # a rolled-back savepoint's effects are never published
        return True

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
