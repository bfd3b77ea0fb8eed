"""Scenario: a retention pass beside the inbox. The inbox scenario's data set is seeded (10M messages
at full scale), the oldest tenth is made to fall past GATEWAY_RETENTION_MESSAGES_DAYS, and the agent
queue and history queries are timed first alone, then while a retention pass turns those messages
into tombstones (batches of GATEWAY_RETENTION_BATCH, each its own transaction). The target is the
inbox p99 of the inbox scenario, held while the pass runs.
"""
from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from gateway.devtools.bench.harness import Bench, connect_pool, figure, pcts, r, verdict
from gateway.devtools.bench.scenarios_inbox import TARGET_P99_MS, message_count, seed
from gateway.domain.timers import ManualClock
from gateway.retention import Retention

EXPIRED_SHARE = 0.10
RETENTION_DAYS = 30


async def _inbox_latencies(dsn: str, n_conversations: int, until) -> dict:
    """Time the queue's first page and ordinary history pages, in turn, until `until()` is true."""
    from gateway.inbox.queries import ConversationFilter, list_conversations, list_messages
    from gateway.inbox.scope import Scope

    pool = await connect_pool(dsn, max_size=1)
    agent, admin = Scope(everything=False, agent_id=1, team_ids=frozenset({1})), Scope(everything=True)
    queue = ConversationFilter(status="open", mode="agent", sort="waiting")
    values: list[float] = []
    i = 0
    try:
        async with pool.acquire() as conn:
            while not until() or len(values) < 50:
                i += 1
                t = time.perf_counter()
                if i % 2:
                    await list_conversations(conn, agent, queue, limit=25)
                else:
                    await list_messages(conn, admin, 2 + (i * 7919) % (n_conversations - 1), limit=50)
                values.append((time.perf_counter() - t) * 1000)
    finally:
        await pool.close()
    return {**pcts(values), "runs": len(values)}


async def measure(b: Bench, dsn: str, n_conversations: int, samples: int) -> dict:
    total = message_count(n_conversations, b.sizes.inbox_big_conversation)
    # the seed spreads created_at from BASE onwards: pick "now" so the oldest tenth is past the limit
    pool = await connect_pool(dsn, max_size=2)
    try:
        edge = await pool.fetchval("SELECT created_at FROM messages ORDER BY created_at OFFSET $1 LIMIT 1",
                                   int(total * EXPIRED_SHARE))
    finally:
        await pool.close()
    clock = ManualClock(edge + timedelta(days=RETENTION_DAYS))
    settings = b.settings.with_(retention_messages_days=RETENTION_DAYS)
    count = iter(range(10**9))
    alone = await _inbox_latencies(dsn, n_conversations, lambda: next(count) >= samples)

    retention_pool = await connect_pool(dsn, max_size=2)
    finished = asyncio.Event()
    try:
        async def one_pass() -> tuple[int, float]:
            started = time.perf_counter()
            try:
                done = await Retention(retention_pool, settings, clock=clock).run_once()
            finally:
                finished.set()
            return done["messages"], time.perf_counter() - started
        (expired, seconds), beside = await asyncio.gather(
            one_pass(), _inbox_latencies(dsn, n_conversations, finished.is_set))
        left = await retention_pool.fetchval(
            "SELECT count(*) FROM messages WHERE created_at < $1 AND expired_at IS NULL",
            clock.now() - timedelta(days=RETENTION_DAYS))
    finally:
        await retention_pool.close()
    return {"messages": total, "expired": expired, "left_unexpired": left, "pass_seconds": r(seconds, 1),
            "expired_per_s": r(expired / seconds) if seconds else None, "batch": settings.retention_batch,
            "inbox_alone": alone, "inbox_beside_retention": beside}


def run(b: Bench) -> dict:
    n, big = b.sizes.inbox_conversations, b.sizes.inbox_big_conversation
    started = time.perf_counter()
    seeded = asyncio.run(seed(b.dsn, n, big))
    seeded["seed_total_s"] = r(time.perf_counter() - started, 1)
    res = asyncio.run(measure(b, b.dsn, n, b.sizes.inbox_samples))
    p99_alone, p99_beside = res["inbox_alone"]["p99_ms"], res["inbox_beside_retention"]["p99_ms"]
    figures = [figure(f"inbox p99 while a retention pass expires {res['expired']:,} of {res['messages']:,} messages",
                      f"{p99_beside} ms (alone {p99_alone} ms); pass {res['pass_seconds']} s, "
                      f"{res['left_unexpired']} left", f"< {TARGET_P99_MS:g} ms, none left",
                      p99_beside < TARGET_P99_MS and res["left_unexpired"] == 0)]
    return {"seed": seeded, **res, "figures": figures,
            "summary": {"measured": f"{res['expired']:,} of {res['messages']:,} messages expired in "
                                    f"{res['pass_seconds']} s ({res['expired_per_s']}/s); inbox p99 "
                                    f"{p99_alone} ms alone, {p99_beside} ms beside the pass",
                        "target": f"inbox p99 < {TARGET_P99_MS:g} ms while a pass expires 1,000,000 of "
                                  "10,000,000 messages",
                        "ratio": r(p99_beside / p99_alone, 1) if p99_alone else None,
                        "ratio_meaning": "inbox p99 beside the pass / alone",
                        "verdict": verdict(p99_beside < TARGET_P99_MS and res["left_unexpired"] == 0)}}


def show(res: dict) -> None:
    print(f"\n== Retention beside the inbox: {res['messages']:,} messages, {res['expired']:,} expired in "
          f"{res['pass_seconds']} s ({res['expired_per_s']}/s, batches of {res['batch']}); "
          f"{res['left_unexpired']} expired messages left")
    print(f"{'inbox queries':<30}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'runs':>8}")
    for name in ("inbox_alone", "inbox_beside_retention"):
        v = res[name]
        print(f"{name:<30}{v['p50_ms']:>9}{v['p95_ms']:>9}{v['p99_ms']:>9}{v['runs']:>8}")
    print(f"target: {res['summary']['target']} -> {res['summary']['verdict']}")
