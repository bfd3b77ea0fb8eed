"""Scenario 5, inbox at scale: the agent queue listing and a conversation's history page.

The scenario's throwaway database is seeded with COPY (contacts, conversations, messages: one big
conversation and the rest 2-20 messages each), the way a bulk load is done: secondary indexes
dropped first and rebuilt after, foreign-key triggers skipped (the rows are consistent by
construction), then ANALYZE. Then the real query functions of gateway/inbox/queries.py are timed
many times each: the queue's first page and a deep keyset page as an agent sees them, and history
pages of the big conversation and of ordinary ones. The naive comparison is the same queue query
paginated with OFFSET to the same depth.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import asyncpg

from gateway.devtools.bench.harness import Bench, Progress, connect_pool, figure, pcts, r, verdict
from gateway.inbox.rollups import Rollups

TARGET_P99_MS = 20.0
TARGET_SEARCH_P99_MS = 50.0
TARGET_SUMMARY_P99_MS = 200.0
# a rare word (one conversation's tracking number), a word in a sixth of all messages, a phrase
SEARCHES = ("{rare}", "shipped", '"blue shoes"')
COUNTS = (2, 5, 10, 13, 20)          # messages per ordinary conversation: 10 on average
BODIES = ("hi", "where is my order XY-{n}", "Your order XY-{n} has shipped and arrives on Friday.",
          "can I return the blue shoes?", "Thanks! One of our team will answer you here.",
          "my parcel has not arrived yet, tracking says {n}")
BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
QUEUE_DEPTH = 10_000


def message_count(n_conversations: int, big: int) -> int:
    per_cycle = sum(COUNTS)
    full, rest = divmod(n_conversations - 1, len(COUNTS))
    return big + full * per_cycle + sum(COUNTS[:rest])


def _conversation_row(i: int, count: int) -> tuple:
    # 5% wait in the agent queue, spread over three teams and the unrouted queue
    last = BASE + timedelta(seconds=i * 7 + count * 60)
    if i % 20 == 0 or i == 1:
        team = None if i == 1 or (i // 20) % 4 == 0 else (i // 20) % 4
        return (i, i, "open", "agent", team, count, last, "sms", last, last - timedelta(seconds=30))
    status = "resolved" if i % 4 else "open"
    return (i, i, status, "bot", None, count, last, "sms", last, None)


CONV_COLUMNS = ["id", "contact_id", "status", "mode", "team_id", "last_seq", "last_inbound_at",
                "last_inbound_channel", "last_message_at", "waiting_since"]
MSG_COLUMNS = ["conversation_id", "seq", "direction", "channel", "body", "author_type", "status",
               "sender_address", "recipient_address", "created_at", "processed_at"]


EPISODE_COLUMNS = ["id", "conversation_id", "opened_at", "escalated_at", "first_response_at", "resolved_at",
                   "handled_by_bot_only", "channel"]


def _episodes(n_conversations: int):
    """One episode per conversation: a tenth escalated (answered 2-30 minutes later), three in four resolved."""
    for i in range(1, n_conversations + 1):
        opened = BASE + timedelta(seconds=i * 7 + 60)
        escalated = opened + timedelta(minutes=1) if i % 10 == 0 else None
        answered = escalated + timedelta(minutes=2 + i % 29) if escalated else None
        resolved = opened + timedelta(minutes=5 + i % 300) if i % 4 else None
        yield (i, i, opened, escalated, answered, resolved, None if resolved is None else escalated is None, "sms")


def _messages(n_conversations: int, big: int):
    for i in range(1, n_conversations + 1):
        count = big if i == 1 else COUNTS[(i - 2) % len(COUNTS)]
        start = BASE + timedelta(seconds=i * 7)
        customer = f"+1415{i:07d}"
        for seq in range(1, count + 1):
            at = start + timedelta(seconds=seq * 60)
            body = BODIES[(i + seq) % len(BODIES)].format(n=i * 31 + seq)
            if seq % 2:
                yield (i, seq, "in", "sms", body, "customer", None, customer, None, at, at)
            else:
                yield (i, seq, "out", "sms", body, "bot", "delivered", None, customer, at, None)


async def seed(dsn: str, n_conversations: int, big: int) -> dict:
    conn = await asyncpg.connect(dsn)
    timings = {}
    try:
        await conn.execute("SET session_replication_role = replica; SET maintenance_work_mem = '512MB'; "
                           "SET synchronous_commit = off")
        indexes = await conn.fetch(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
               WHERE i.schemaname = 'public' AND i.tablename IN ('contacts', 'conversations', 'messages', 'episodes')
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""")
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        await conn.execute("INSERT INTO teams (id, name) VALUES (1, 'support'), (2, 'sales'), (3, 'billing')")
        t = time.perf_counter()
        await conn.copy_records_to_table("contacts", columns=["id", "name"], records=Progress(
            "seeding contacts", n_conversations).count((i, f"Customer {i}") for i in range(1, n_conversations + 1)))
        await conn.copy_records_to_table(
            "conversations", columns=CONV_COLUMNS, records=Progress("seeding conversations", n_conversations).count(
                _conversation_row(i, big if i == 1 else COUNTS[(i - 2) % len(COUNTS)])
                for i in range(1, n_conversations + 1)))
        await conn.copy_records_to_table("episodes", columns=EPISODE_COLUMNS, records=Progress(
            "seeding episodes", n_conversations).count(_episodes(n_conversations)))
        timings["copy_contacts_conversations_s"] = r(time.perf_counter() - t, 1)
        t = time.perf_counter()
        total = message_count(n_conversations, big)
        await conn.copy_records_to_table("messages", columns=MSG_COLUMNS, records=Progress(
            "seeding messages", total).count(_messages(n_conversations, big), step=50_000))
        timings["copy_messages_s"] = r(time.perf_counter() - t, 1)
        t = time.perf_counter()
        rebuild = Progress("rebuilding indexes", len(indexes))
        for k, row in enumerate(indexes, 1):
            await conn.execute(row["indexdef"])
            rebuild.update(k)
        timings["rebuild_indexes_s"] = r(time.perf_counter() - t, 1)
        for table in ("contacts", "conversations", "messages"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}))")
        t = time.perf_counter()
        await conn.execute("ANALYZE contacts; ANALYZE conversations; ANALYZE messages; ANALYZE episodes")
        timings["analyze_s"] = r(time.perf_counter() - t, 1)
        t = time.perf_counter()     # the rollups' backfill, as the first worker passes after migration 0016 do it
        pool = await connect_pool(dsn, max_size=2)
        try:
            rollups, progress, days = Rollups(pool), Progress("rolling up days"), 0
            while n := await rollups.step():
                days += n
                progress.update(days)
            progress.update(days, force=True)
            timings["rollup_days"] = days
        finally:
            await pool.close()
        await conn.execute("ANALYZE rollup_messages; ANALYZE rollup_inbox_reach; ANALYZE rollup_inbox_conversations; "
                           "ANALYZE rollup_episodes; ANALYZE rollup_durations; ANALYZE rollup_agents")
        timings["rollup_backfill_s"] = r(time.perf_counter() - t, 1)
        timings["messages"] = await conn.fetchval("SELECT count(*) FROM messages")
        timings["conversations"] = await conn.fetchval("SELECT count(*) FROM conversations")
    finally:
        await conn.close()
    return timings


async def _timed(fn, samples: int, budget: float | None = None) -> dict:
    """Percentiles of `samples` runs after a warm-up; with a `budget` (seconds) it stops early, after
    10 runs at least (a slow query is still measured, without holding the bench for minutes)."""
    started = time.perf_counter()
    for _ in range(min(20, samples)):
        await fn()
        if budget and time.perf_counter() - started > budget / 4:
            break
    values = []
    started = time.perf_counter()
    for _ in range(samples):
        t = time.perf_counter()
        await fn()
        values.append((time.perf_counter() - t) * 1000)
        if budget and len(values) >= 10 and time.perf_counter() - started > budget:
            break
    return {**pcts(values), "runs": len(values)}


async def measure(dsn: str, n_conversations: int, big: int, samples: int) -> dict:
    from gateway.inbox.queries import ConversationFilter, list_conversations, list_messages, list_query
    from gateway.inbox.reports import summary, summary_from_raw
    from gateway.inbox.scope import Scope
    from gateway.inbox.search import search_messages

    pool = await connect_pool(dsn, max_size=1)
    agent = Scope(everything=False, agent_id=1, team_ids=frozenset({1}))
    queue = ConversationFilter(status="open", mode="agent", sort="waiting")
    out: dict = {}
    try:
        async with pool.acquire() as conn:
            # walk the queue with keyset cursors to QUEUE_DEPTH (or half of it when shorter)
            visible = await conn.fetchval(
                """SELECT count(*) FROM conversations WHERE status = 'open' AND mode = 'agent'
                   AND (team_id IS NULL OR team_id = 1 OR assignee_id = 1)""")
            depth = min(QUEUE_DEPTH, visible // 2)
            cursor, walked = None, 0
            while walked < depth:
                page, cursor = await list_conversations(conn, agent, queue, limit=min(100, depth - walked),
                                                        cursor=cursor)
                walked += len(page)
            sql, args = list_query(agent, queue, limit=25, cursor=None)
            offset_sql = sql.replace(f"LIMIT ${len(args)}", f"OFFSET {depth} LIMIT ${len(args)}")
            ordinary = [2 + k * max(1, (n_conversations - 2) // 50) for k in range(50)]
            k = iter(range(10**9))
            out["queue_first_page"] = await _timed(lambda: list_conversations(conn, agent, queue, limit=25), samples)
            out["queue_deep_page_keyset"] = await _timed(
                lambda: list_conversations(conn, agent, queue, limit=25, cursor=cursor), samples)
            out["queue_deep_page_offset_naive"] = await _timed(lambda: conn.fetch(offset_sql, *args), samples)
            admin = Scope(everything=True)
            out["history_latest_page_big"] = await _timed(lambda: list_messages(conn, admin, 1, limit=50), samples)
            out["history_middle_page_big"] = await _timed(
                lambda: list_messages(conn, admin, 1, before_seq=big // 2, limit=50), samples)
            out["history_latest_page_ordinary"] = await _timed(
                lambda: list_messages(conn, admin, ordinary[next(k) % len(ordinary)], limit=50), samples)
            # full-text search as an admin sees it (everything) and as an agent of one team
            rare = f"XY-{(n_conversations // 2) * 31 + 2}"
            for q in SEARCHES:
                q = q.format(rare=rare)
                out[f"search {q} (admin)"] = await _timed(lambda: search_messages(conn, admin, q), samples, 8)
                out[f"search {q} (agent)"] = await _timed(lambda: search_messages(conn, agent, q), samples, 8)
            # metrics/summary over the busiest month of the seeded data
            month = BASE + timedelta(days=30), BASE + timedelta(days=60)
            out["summary_one_month"] = await _timed(lambda: summary(conn, *month), samples, 10)
            t = time.perf_counter()     # the same figures from the raw rows only, once (seconds at full size)
            raw = await summary_from_raw(conn, *month)
            out["summary_one_month_from_raw_ms"] = r((time.perf_counter() - t) * 1000, 1)
            out["summary_matches_raw"] = raw == await summary(conn, *month)
            out["queue_visible_to_agent"] = visible
            out["queue_depth"] = depth
            deep_sql, deep_args = list_query(agent, queue, limit=25, cursor=cursor)
            out["plan_queue_deep_page"] = "\n".join(
                row[0] for row in await conn.fetch("EXPLAIN " + deep_sql, *deep_args))
    finally:
        await pool.close()
    return out


def run(b: Bench) -> dict:
    dsn = b.dsn
    n, big, samples = b.sizes.inbox_conversations, b.sizes.inbox_big_conversation, b.sizes.inbox_samples
    started = time.perf_counter()
    seeded = asyncio.run(seed(dsn, n, big))
    seeded["seed_total_s"] = r(time.perf_counter() - started, 1)
    res = asyncio.run(measure(dsn, n, big, samples))
    queue_p99 = max(res["queue_first_page"]["p99_ms"], res["queue_deep_page_keyset"]["p99_ms"])
    history_p99 = max(res["history_latest_page_big"]["p99_ms"], res["history_middle_page_big"]["p99_ms"],
                      res["history_latest_page_ordinary"]["p99_ms"])
    search_p99 = max(v["p99_ms"] for k, v in res.items() if k.startswith("search "))
    summary_p99 = res["summary_one_month"]["p99_ms"]
    summary_ok = summary_p99 < TARGET_SUMMARY_P99_MS and res["summary_matches_raw"]
    size = f"{seeded['conversations']:,} conversations / {seeded['messages']:,} messages"
    figures = [
        figure(f"agent queue p99, first and deep keyset page ({size})", f"{queue_p99} ms", f"< {TARGET_P99_MS:g} ms",
               queue_p99 < TARGET_P99_MS),
        figure(f"history page p99 ({size})", f"{history_p99} ms", f"< {TARGET_P99_MS:g} ms",
               history_p99 < TARGET_P99_MS),
        figure(f"full-text search p99, worst of {len(SEARCHES)} queries x admin/agent ({size})", f"{search_p99} ms",
               f"< {TARGET_SEARCH_P99_MS:g} ms", search_p99 < TARGET_SEARCH_P99_MS),
        figure(f"metrics/summary over one month p99, from the daily rollups ({size}; backfilled "
               f"{seeded['rollup_days']} days in {seeded['rollup_backfill_s']} s)",
               f"{summary_p99} ms (from the raw rows: {res['summary_one_month_from_raw_ms']} ms, "
               f"{'same' if res['summary_matches_raw'] else 'DIFFERENT'} figures)",
               f"< {TARGET_SUMMARY_P99_MS:g} ms, same figures", summary_ok),
    ]
    naive = res["queue_deep_page_offset_naive"]["p99_ms"]
    ratio = r(naive / res["queue_deep_page_keyset"]["p99_ms"], 1) if res["queue_deep_page_keyset"]["p99_ms"] else None
    return {"seed": seeded, "samples": samples, **res, "figures": figures,
            "summary": {"measured": f"p99 queue {queue_p99} ms, history {history_p99} ms, search {search_p99} ms, "
                                    f"summary (month) {summary_p99} ms with {size} (seeded in {seeded['seed_total_s']} s)",
                        "target": f"p99 < {TARGET_P99_MS:g} ms queue and history, < {TARGET_SEARCH_P99_MS:g} ms "
                                  f"search, < {TARGET_SUMMARY_P99_MS:g} ms summary at 1,000,000 conversations / "
                                  "10,000,000 messages",
                        "ratio": ratio, "ratio_meaning": "OFFSET p99 / keyset p99 at the same queue depth",
                        "verdict": verdict(all(f["verdict"] == "PASS" for f in figures))}}


def show(res: dict) -> None:
    s = res["seed"]
    print(f"\n== Inbox at scale: {s['conversations']:,} conversations, {s['messages']:,} messages "
          f"(COPY {s['copy_messages_s']} s, indexes {s['rebuild_indexes_s']} s, rollups' backfill "
          f"{s['rollup_backfill_s']} s, total {s['seed_total_s']} s)")
    print(f"{'query (' + str(res['samples']) + ' runs each)':<46}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name in ("queue_first_page", "queue_deep_page_keyset", "queue_deep_page_offset_naive",
                 "history_latest_page_big", "history_middle_page_big", "history_latest_page_ordinary",
                 *(k for k in res if k.startswith("search ")), "summary_one_month"):
        v = res[name]
        print(f"{name:<46}{v['p50_ms']:>9}{v['p95_ms']:>9}{v['p99_ms']:>9}")
    print(f"agent queue: {res['queue_visible_to_agent']:,} conversations visible, deep page at {res['queue_depth']:,}; "
          f"target p99 < {TARGET_P99_MS:g} ms -> {res['summary']['verdict']}")
