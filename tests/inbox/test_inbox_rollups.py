"""metrics/summary from the daily rollups (gateway/inbox/rollups.py) answers exactly what the raw rows
say (`reports.summary_from_raw`): over a seeded history of two weeks (episodes and threads spanning
midnight, every direction and kind, inboxes and teams, tombstoned messages) for periods in several
time zones, before the first pass (all raw), after the backfill, after the conversation owner
changed closed days (marked, then recomputed), and after a pass that stopped half way."""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.domain import conversation
from gateway.domain.types import Effects
from gateway.inbox import reports
from gateway.inbox.merge import merge_contacts
from gateway.inbox.privacy import redact_message_sql
from gateway.inbox.rollups import Rollups, compute_day

DAYS = 12
ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Australia/Eucla", "Pacific/Chatham")


def _periods(base: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    periods = [(base - timedelta(days=3), now + timedelta(days=1)),          # everything, today's live part too
               (base, base + timedelta(days=30)),
               (base + timedelta(days=2), base + timedelta(days=9)),
               (base + timedelta(days=1, hours=13, minutes=37, seconds=12.345), base + timedelta(days=7, hours=2)),
               (base + timedelta(days=4, hours=1), base + timedelta(days=4, hours=23)),
               (base + timedelta(days=5), base + timedelta(days=5, microseconds=1)),
               (now.replace(hour=0, minute=0, second=0, microsecond=0), now + timedelta(hours=1)),
               (base + timedelta(days=40), base + timedelta(days=41))]
    for name in ZONES:      # a dashboard's local days and weeks
        zone = ZoneInfo(name)
        local = datetime.combine((base + timedelta(days=3)).date(), datetime.min.time(), tzinfo=zone)
        periods.append((local, local + timedelta(days=1)))
        periods.append((local, local + timedelta(days=7)))
        periods.append((local - timedelta(days=1), datetime.combine(now.date(), datetime.min.time(), tzinfo=zone)
                        + timedelta(days=1)))
    return periods


async def _same(pool, base, now, when: str) -> None:
    async with pool.acquire() as conn:
        for since, until in _periods(base, now):
            fast, raw = await reports.summary(conn, since, until), await reports.summary_from_raw(conn, since, until)
            assert fast == raw, f"{when}: {since} .. {until}"


async def _seed(pool, base: datetime, now: datetime) -> None:
    rnd = random.Random(13)
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO teams (id, name) VALUES (1, 'support'), (2, 'sales'), (3, 'idle'), (4, 'long')")
        await conn.execute("INSERT INTO agents (id, name) VALUES (1, 'Ann'), (2, 'Bob'), (3, 'Cy')")
        await conn.execute("""INSERT INTO inboxes (id, name, channel, provider, address) VALUES
                              (1, 'Shop SMS', 'sms', 'twilio', '+15550001'), (2, 'Help mail', 'email', 'smtp', 'help@x')""")
        episodes, messages = [], []
        n_conv = 60
        for c in range(1, n_conv + 1):
            team = 4 if c == n_conv else rnd.choice([None, None, 1, 2])
            await conn.execute("INSERT INTO contacts (id, name) VALUES ($1, $2)", c, f"Customer {c}")
            await conn.execute("INSERT INTO conversations (id, contact_id, team_id) VALUES ($1, $1, $2)", c, team)
            at = base + timedelta(minutes=rnd.randrange(0, DAYS * 1440 // 2))
            if c == n_conv:
                at = base - timedelta(days=2)       # team 'long': one episode open through every period
            seq = 0
            for _ in range(rnd.choice([1, 1, 2, 3])):
                opened = at
                if rnd.random() < 0.3:      # just before midnight: the episode and thread span it
                    opened = opened.replace(hour=23, minute=rnd.randrange(40, 60), second=rnd.randrange(60))
                escalated = opened + timedelta(minutes=rnd.randrange(1, 90), microseconds=rnd.randrange(10**6)) \
                    if rnd.random() < 0.5 else None
                answered = escalated + timedelta(minutes=rnd.choice([2, 2, 5, 17, 95, 600])) \
                    if escalated and rnd.random() < 0.7 else None
                resolved = (answered or escalated or opened) + timedelta(minutes=rnd.choice([3, 30, 30, 200, 1500])) \
                    if rnd.random() < 0.7 and c != n_conv else None
                if resolved and resolved > now - timedelta(minutes=1):
                    resolved = None
                if answered and answered > now - timedelta(minutes=1):
                    answered = None
                resolved_by = rnd.choice([None, 1, 2]) if resolved else None
                csat = rnd.choice([None, 1, 3, 5, 5]) if resolved else None
                episodes.append((c, opened, escalated, answered, resolved, resolved_by, rnd.choice(["sms", "email"]),
                                 csat, resolved + timedelta(minutes=5) if csat else None, resolved_by, team))
                t = opened
                for _m in range(rnd.randrange(1, 9)):
                    seq += 1
                    direction = rnd.choice(["in", "in", "out", "out", "internal"])
                    kind = "message" if direction != "internal" else rnd.choice(["note", "event", "message"])
                    author = ("customer", None) if direction == "in" else rnd.choice(
                        [("bot", None), ("agent", 1), ("agent", 2), ("agent", 3), ("system", None)])
                    if rnd.random() < 0.05:
                        t = t.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)   # at midnight
                    messages.append((c, seq, direction, kind, rnd.choice(["sms", "sms", "email", "webchat"]),
                                     f"m{c}.{seq}", author[0], author[1], rnd.choice([None, 1, 2, 2, 99]), t))
                    t += timedelta(minutes=rnd.choice([1, 7, 60, 300]), microseconds=rnd.randrange(10**6))
                at = max(t, resolved or t) + timedelta(minutes=rnd.randrange(10, 3000))
                if at > now - timedelta(hours=1):
                    break
        await conn.executemany(
            """INSERT INTO episodes (conversation_id, opened_at, escalated_at, first_response_at, resolved_at,
                                     resolved_by, channel, csat_score, csat_at, csat_agent_id, csat_team_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""", episodes)
        messages = [m for m in messages if m[-1] < now - timedelta(minutes=1)]
        await conn.executemany(
            """INSERT INTO messages (conversation_id, seq, direction, kind, channel, body, author_type, author_id,
                                     inbox_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            messages)
        await conn.execute(
            """UPDATE conversations c SET current_episode_id = e.id, last_seq = coalesce(m.seq, 0),
                   status = CASE WHEN e.resolved_at IS NULL THEN 'open' ELSE 'resolved' END,
                   mode = CASE WHEN e.escalated_at IS NULL THEN 'bot' ELSE 'agent' END
               FROM (SELECT DISTINCT ON (conversation_id) * FROM episodes ORDER BY conversation_id, opened_at DESC) e
               LEFT JOIN (SELECT conversation_id, max(seq) AS seq FROM messages GROUP BY 1) m
                 ON m.conversation_id = e.conversation_id
               WHERE c.id = e.conversation_id""")
        for table in ("contacts", "conversations", "episodes", "messages", "agents", "inboxes", "teams"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        # today's live part: a new episode and a few messages now
        await conn.execute("INSERT INTO episodes (conversation_id, channel) VALUES (1, 'sms')")
        await conn.execute(
            """INSERT INTO messages (conversation_id, seq, direction, channel, body, author_type, author_id, inbox_id)
               VALUES (1, 1000, 'in', 'sms', 'now', 'customer', NULL, 1), (2, 1000, 'out', 'sms', 'now', 'agent', 1, 1),
                      (3, 1000, 'in', 'email', 'now', 'customer', NULL, NULL)""")


@pytest.fixture
async def seeded(pool, clean):
    now = await pool.fetchval("SELECT now()")
    base = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS)
    await _seed(pool, base, now)
    return base, now


async def test_the_rollups_answer_what_the_raw_rows_say(pool, seeded):
    base, now = seeded
    await _same(pool, base, now, "before the first pass")
    # a mark on a day not rolled up yet waits for the backfill to reach it (oldest day first)
    await pool.execute("INSERT INTO rollup_dirty (day) VALUES ($1)", (base + timedelta(days=5)).date())
    done = await Rollups(pool).step()       # the first data day (and the empty one after it)
    assert await pool.fetchval("SELECT min(day) FROM rollup_days") == (base - timedelta(days=2)).date()
    assert await pool.fetchval("SELECT max(day) FROM rollup_days") < (base + timedelta(days=5)).date()
    done += await Rollups(pool).run_once()
    assert done == DAYS + 2                           # the backfill: every closed day since the first data
    assert await pool.fetchval("SELECT max(day) FROM rollup_days") < now.date()
    async with pool.acquire() as conn:                # the month is read from the rollups
        _, _, a, b = await reports._plan(conn, base, base + timedelta(days=30))
        assert (b - a).days == DAYS
    await _same(pool, base, now, "after the backfill")

    # tombstones: retention and erasure keep a message's place, direction, channel and time
    await pool.execute(f"UPDATE messages SET {redact_message_sql(repr(''))}, expired_at = now() WHERE id % 3 = 0")
    await _same(pool, base, now, "after retention")

    # the owner changes closed days: each marks what it changed
    async with pool.acquire() as conn, conn.transaction():
        past = "opened_at < date_trunc('day', now(), 'UTC')"
        conv = await conn.fetchrow(
            f"""SELECT c.* FROM conversations c JOIN episodes e ON e.id = c.current_episode_id
                WHERE e.escalated_at IS NULL AND e.resolved_at IS NULL AND e.{past} AND c.mode = 'bot' LIMIT 1""")
        await conversation.take_over(conn, conv, "assigned")
        ep = await conn.fetchrow(
            f"""SELECT * FROM episodes WHERE escalated_at IS NOT NULL AND first_response_at IS NULL
                AND resolved_at IS NULL AND {past} LIMIT 1""")
        await conversation.agent_answered(conn, ep["conversation_id"], 1, ep["id"])
        conv = await conn.fetchrow(
            """SELECT c.* FROM conversations c JOIN episodes e ON e.id = c.current_episode_id
                WHERE e.resolved_at < date_trunc('day', now(), 'UTC') AND e.resolved_by IS NOT NULL LIMIT 1""")
        await conversation.reopen(conn, conv)
        moved = await conn.fetchval(
            "SELECT conversation_id FROM episodes GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1")
        await conversation.set_team(conn, moved, 2, None)
        both = await conn.fetch(
            """SELECT conversation_id FROM messages WHERE direction = 'in' AND created_at < date_trunc('day', now(), 'UTC')
               GROUP BY 1 HAVING count(DISTINCT created_at::date) > 1 ORDER BY 1 DESC LIMIT 2""")
        await merge_contacts(conn, both[0][0], both[1][0], Effects())
    await _same(pool, base, now, "with marked days")
    assert await pool.fetchval("SELECT count(DISTINCT day) FROM rollup_dirty") >= 3
    assert await Rollups(pool).run_once() >= 3
    assert await pool.fetchval("SELECT count(*) FROM rollup_dirty") == 0
    await _same(pool, base, now, "after the marked days were recomputed")

    # a pass that stopped half way (days are rolled one transaction each) and a day computed twice
    last = await pool.fetchval("SELECT max(day) FROM rollup_days")
    await pool.execute("DELETE FROM rollup_days WHERE day > $1", last - timedelta(days=3))
    await pool.execute("DELETE FROM rollup_episodes WHERE day = $1", last)
    await _same(pool, base, now, "after a pass stopped half way")
    async with pool.acquire() as conn, conn.transaction():
        await compute_day(conn, last - timedelta(days=5))
    assert await Rollups(pool).run_once() == 3
    assert await Rollups(pool).run_once() == 0
    await _same(pool, base, now, "after catching up")


async def test_a_mark_made_while_a_day_is_computed_stays_for_the_next_pass(pool, seeded):
    base, now = seeded
    await Rollups(pool).run_once()
    day = (base + timedelta(days=3)).date()
    await pool.execute("INSERT INTO rollup_dirty (day) VALUES ($1)", day)
    async with pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        await other.execute("INSERT INTO rollup_dirty (day) VALUES ($1)", day)   # not committed yet
        # the pass cannot close today while `other` is open, but recomputes the marked day
        assert await Rollups(pool).step() == 1
        assert await pool.fetchval("SELECT count(*) FROM rollup_dirty WHERE day = $1", day) == 0
        await tx.commit()
    assert await pool.fetchval("SELECT count(*) FROM rollup_dirty WHERE day = $1", day) == 1
    await _same(pool, base, now, "with the late mark")
    assert await Rollups(pool).run_once() == 1
