"""Daily rollups of the inbox metrics (migrations/0016_rollups.sql), read by `reports.summary`.

A worker-role pass (`Rollups.run`, every GATEWAY_ROLLUP_INTERVAL seconds) computes each closed UTC
day from the raw rows, oldest first, one short transaction per day (so a stopped pass loses at most
the day it was on, and a day computed twice is computed the same): the first passes after the
migration backfill every day that has data. A day is closed when it ended before the oldest
transaction still running began (and a minute ago): a transaction that began inside the day could
still write rows stamped inside it (`now()` is the transaction's start).

The figures of a closed day change later only through the conversation owner (gateway/domain/conversation.py):
an older episode escalated or first answered, a reopened episode, a conversation moved to another
team, two threads merged. It marks the affected days in rollup_dirty (`_mark_rollup_days` there),
and the next pass recomputes them. The marks that pass saw are removed by id
in the day's transaction, so a mark made meanwhile stays for the next pass. The reports read a day
from the rollups only when it is rolled up and has no mark; everything else comes from raw rows.
"""
from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta, timezone

import asyncpg

from gateway.app.log import get_logger
from gateway.infra import periodic

log = get_logger(__name__)
LOCK_KEY = 0x726F6C6C7570      # "rollup": one process computes a day at a time
GRACE = timedelta(minutes=1)
NONE = 0                        # inbox_id / team_id of the rows that have none


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


# -- computing a day from the raw rows ----------------------------------------------------------------

DAY_SQL = (
    "DELETE FROM rollup_messages WHERE day = $1",
    """INSERT INTO rollup_messages (day, channel, inbox_id, inbound, outbound, internal)
       SELECT $1::date, channel, coalesce(inbox_id, 0), count(*) FILTER (WHERE direction = 'in'),
              count(*) FILTER (WHERE direction = 'out'), count(*) FILTER (WHERE direction = 'internal')
       FROM messages WHERE created_at >= $2 AND created_at < $3 AND kind = 'message'
       GROUP BY channel, coalesce(inbox_id, 0)""",
    "DELETE FROM rollup_inbox_conversations WHERE day = $1",
    """INSERT INTO rollup_inbox_conversations (conversation_id, inbox_id, day)
       SELECT DISTINCT conversation_id, coalesce(inbox_id, 0), $1::date
       FROM messages WHERE created_at >= $2 AND created_at < $3 AND kind = 'message' AND direction = 'in'""",
    "DELETE FROM rollup_inbox_reach WHERE day = $1",
    """INSERT INTO rollup_inbox_reach (day, inbox_id, prev_day, n)
       SELECT $1::date, c.inbox_id, coalesce(p.day, '-infinity'), count(*)
       FROM rollup_inbox_conversations c
       LEFT JOIN LATERAL (SELECT x.day FROM rollup_inbox_conversations x
                          WHERE x.conversation_id = c.conversation_id AND x.inbox_id = c.inbox_id AND x.day < c.day
                          ORDER BY x.day DESC LIMIT 1) p ON true
       WHERE c.day = $1
       GROUP BY c.inbox_id, coalesce(p.day, '-infinity')""",
    "DELETE FROM rollup_agents WHERE day = $1",
    """INSERT INTO rollup_agents (day, agent_id, replies, resolved)
       SELECT $1::date, agent_id, sum(replies), sum(resolved) FROM (
           SELECT author_id AS agent_id, count(*) AS replies, 0 AS resolved FROM messages
           WHERE created_at >= $2 AND created_at < $3 AND author_type = 'agent' AND direction = 'out'
             AND author_id IS NOT NULL GROUP BY author_id
           UNION ALL
           SELECT resolved_by, 0, count(*) FROM episodes
           WHERE resolved_at >= $2 AND resolved_at < $3 AND resolved_by IS NOT NULL GROUP BY resolved_by) t
       GROUP BY agent_id""",
    "DELETE FROM rollup_episodes WHERE day = $1",
    """INSERT INTO rollup_episodes (day, team_id, opened, bot_only, escalated, resolved)
       SELECT $1::date, coalesce(c.team_id, 0),
              count(*) FILTER (WHERE e.opened_at >= $2 AND e.opened_at < $3),
              count(*) FILTER (WHERE e.opened_at >= $2 AND e.opened_at < $3 AND e.escalated_at IS NULL),
              count(*) FILTER (WHERE e.escalated_at >= $2 AND e.escalated_at < $3),
              count(*) FILTER (WHERE e.resolved_at >= $2 AND e.resolved_at < $3)
       FROM episodes e JOIN conversations c ON c.id = e.conversation_id
       WHERE (e.opened_at >= $2 AND e.opened_at < $3) OR (e.escalated_at >= $2 AND e.escalated_at < $3)
          OR (e.resolved_at >= $2 AND e.resolved_at < $3)
       GROUP BY coalesce(c.team_id, 0)""",
    "DELETE FROM rollup_durations WHERE day = $1",
    """INSERT INTO rollup_durations (metric, day, seconds, n)
       SELECT 'first_response', $1::date, extract(epoch FROM first_response_at - escalated_at), count(*) FROM episodes
       WHERE escalated_at >= $2 AND escalated_at < $3 AND first_response_at IS NOT NULL GROUP BY 3
       UNION ALL
       SELECT 'resolution', $1::date, extract(epoch FROM resolved_at - opened_at), count(*) FROM episodes
       WHERE resolved_at >= $2 AND resolved_at < $3 GROUP BY 3""",
)


ROLLUP_TABLES = ("rollup_messages", "rollup_inbox_conversations", "rollup_inbox_reach", "rollup_agents",
                 "rollup_episodes", "rollup_durations")


async def compute_day(conn: asyncpg.Connection, day: date) -> None:
    """Replace `day`'s rollup rows by what its raw rows say now (inside the caller's transaction)."""
    lo = day_start(day)
    hi = lo + timedelta(days=1)
    for sql in DAY_SQL:
        await conn.execute(sql, *((day, lo, hi) if "$2" in sql else (day,)))
    await conn.execute("INSERT INTO rollup_days (day) VALUES ($1) ON CONFLICT (day) DO UPDATE SET rolled_at = now()",
                       day)


# the first day not closed yet: the one holding the oldest start of a running transaction (ours too)
CLOSED_SQL = """SELECT (least(now() - $1::interval,
                              (SELECT min(xact_start) FROM pg_stat_activity
                               WHERE backend_type = 'client backend' AND datname = current_database()))
                        AT TIME ZONE 'UTC')::date"""


class Rollups:
    def __init__(self, pool: asyncpg.Pool, interval: float = 300.0):
        self.pool = pool
        self.interval = interval

    async def _closed_before(self, conn: asyncpg.Connection) -> date:
        """Days before the returned one are closed."""
        return await conn.fetchval(CLOSED_SQL, GRACE)

    async def _next_day(self, conn: asyncpg.Connection) -> tuple[date, date]:
        """The next days to compute, [first, last): the oldest marked day of those rolled up, else the
        oldest closed day not rolled up yet (with the closed days after it that have no rows at
        all, computed together: nothing to read); (x, x) when everything is up to date. Days are
        rolled up oldest first, so each day's inbox reach finds the days before it."""
        closed = await self._closed_before(conn)
        marked = await conn.fetchval(
            """SELECT min(day) FROM rollup_dirty
               WHERE day < $1 AND day <= (SELECT max(day) FROM rollup_days)""", closed)
        if marked is not None:
            return marked, marked + timedelta(days=1)
        day = await conn.fetchval(
            """WITH first AS (SELECT least((SELECT min(created_at) FROM messages),
                                           (SELECT min(opened_at) FROM episodes)) AS at),
                    start AS (SELECT greatest((first.at AT TIME ZONE 'UTC')::date,
                                              coalesce((SELECT max(day) + 1 FROM rollup_days), '-infinity')) AS day
                              FROM first)
               SELECT day FROM start, first WHERE first.at IS NOT NULL AND day < $1""", closed)
        if day is None:
            return closed, closed
        after = day_start(day) + timedelta(days=1)
        following = await conn.fetchval(
            """SELECT least((SELECT min(created_at) FROM messages WHERE created_at >= $1),
                            (SELECT min(opened_at) FROM episodes WHERE opened_at >= $1),
                            (SELECT min(escalated_at) FROM episodes WHERE escalated_at >= $1),
                            (SELECT min(resolved_at) FROM episodes WHERE resolved_at >= $1))""", after)
        last = closed if following is None else min(closed, following.astimezone(timezone.utc).date())
        return day, max(last, day + timedelta(days=1))

    async def step(self) -> int:
        """Compute the next days (one transaction); how many, 0 when everything is up to date."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
                first, last = await self._next_day(conn)
                if first >= last:
                    return 0
                # the marks seen now go with this computation; one made meanwhile stays for the next pass
                marks = await conn.fetchval(
                    "SELECT array_agg(id) FROM rollup_dirty WHERE day >= $1 AND day < $2", first, last)
                await compute_day(conn, first)
                if last > first + timedelta(days=1):       # the empty days after it
                    for table in ROLLUP_TABLES:
                        await conn.execute(f"DELETE FROM {table} WHERE day > $1 AND day < $2", first, last)
                    await conn.execute(
                        """INSERT INTO rollup_days (day) SELECT generate_series($1::date, $2::date - 1, '1 day')::date
                           ON CONFLICT (day) DO UPDATE SET rolled_at = now()""", first + timedelta(days=1), last)
                if marks:
                    await conn.execute("DELETE FROM rollup_dirty WHERE id = ANY($1::bigint[])", marks)
                return (last - first).days

    async def run_once(self) -> int:
        """Catch up: every marked day and every closed day not rolled up yet. Returns days computed."""
        done = 0
        while n := await self.step():
            done += n
        if done:
            log.info("rollup pass", days=done)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        await periodic.every(self.interval, stop, self.run_once, log=log, failed="rollup pass failed")
