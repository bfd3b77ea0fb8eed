"""Scenario 6, memory: RSS of one `gateway worker` after N conversations with flow state each had a turn.

The worker (support flow, Twilio pointed at the fake) starts first and its idle RSS is taken. Then
N inbound messages from distinct customers are stored with the real ingest function in batches and
enqueued, the worker drains them (one flow turn and one bot reply each, sent through its outbox),
and its RSS is sampled throughout. The flow design keeps one state machine per flow definition and
a conversation's state in PostgreSQL, so RSS should not grow with N.
"""
from __future__ import annotations

import asyncio
import time

from gateway.devtools.bench.harness import (BENCH_SID, OUR_NUMBER, Bench, Progress, connect_pool, figure, message_sid,
                                            new_run_id, phone, r, rss_bytes, verdict)

TARGET_MB = 300
BATCH = 500


async def _feed_and_wait(b: Bench, pid: int, n: int, samples: list[tuple[float, int]]) -> dict:
    import redis.asyncio as aioredis

    from gateway.channels.twilio.adapter import parse_inbound
    from gateway.pipeline import queue
    from gateway.pipeline.ingest import ingest_item, ingest_items

    pool = await connect_pool(b.dsn)
    redis = aioredis.Redis.from_url(b.settings.redis_url)
    keys = queue.Keys(b.prefix)
    run_id = new_run_id()
    started = time.monotonic()
    feeding, draining = Progress("messages stored and enqueued", n), Progress("turns processed", n)
    try:
        for start in range(0, n, BATCH):
            items = [ingest_item(parse_inbound([
                ("MessageSid", message_sid("m" + run_id, i)), ("AccountSid", BENCH_SID),
                ("From", phone(718, i)), ("To", OUR_NUMBER), ("Body", "hi"), ("NumMedia", "0")]))
                for i in range(start, min(n, start + BATCH))]
            async with pool.acquire() as conn, conn.transaction():
                results = await ingest_items(conn, items)
            await queue.enqueue_many(redis, keys, [res.conversation_id for res in results])
            samples.append((time.monotonic() - started, rss_bytes(pid)))
            feeding.update(min(n, start + BATCH))
        fed = time.monotonic() - started
        deadline = time.monotonic() + max(600, n / 50)
        while time.monotonic() < deadline:
            processed, pending = await pool.fetchrow(
                """SELECT (SELECT count(*) FROM messages WHERE direction = 'in' AND processed_at IS NOT NULL),
                          (SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending'))""")
            samples.append((time.monotonic() - started, rss_bytes(pid)))
            draining.update(processed)
            if processed >= n and not pending:
                break
            await asyncio.sleep(1.0)
        drained = time.monotonic() - started
        with_state = await pool.fetchval("SELECT count(*) FROM conversations WHERE flow_state IS NOT NULL")
        replies = await pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'done'")
    finally:
        await redis.aclose()
        await pool.close()
    return {"processed": processed, "conversations_with_flow_state": with_state, "replies_sent": replies,
            "feed_seconds": r(fed, 1), "drain_seconds": r(drained, 1),
            "turns_per_s": r(processed / drained, 1) if drained else None}


def _mb(value: int) -> float:
    return r(value / 2**20, 1)


def run(b: Bench) -> dict:
    fake = b.start_fake_twilio()
    proc, _ = b.start_gateway("worker", GATEWAY_DEFAULT_HANDLER="flow", GATEWAY_TWILIO_API_BASE=fake)
    time.sleep(2.0)
    idle = rss_bytes(proc.pid)
    samples: list[tuple[float, int]] = []
    n = b.sizes.memory_conversations
    res = asyncio.run(_feed_and_wait(b, proc.pid, n, samples))
    final = rss_bytes(proc.pid)
    peak = max([idle, final, *(s for _, s in samples)])
    b.stop_all()
    done = res["processed"] >= n and res["conversations_with_flow_state"] >= n
    ok = done and peak < TARGET_MB * 2**20
    figures = [figure(f"worker RSS after {res['processed']:,} conversations each had a flow turn",
                      f"{_mb(final)} MB (idle {_mb(idle)} MB, peak {_mb(peak)} MB)",
                      f"< {TARGET_MB} MB (target named at 100,000 conversations)", ok),
               figure("turns drained by one worker (backlog, no other load)", f"{res['turns_per_s']}/s",
                      "reported", None)]
    return {"conversations": n, **res, "figures": figures, "rss_idle_mb": _mb(idle), "rss_final_mb": _mb(final), "rss_peak_mb": _mb(peak),
            "rss_samples_mb": [[r(t, 1), _mb(v)] for t, v in samples[:: max(1, len(samples) // 40)]],
            "summary": {"measured": f"worker RSS {_mb(idle)} MB idle -> {_mb(final)} MB after {res['processed']:,} "
                                    f"conversations had a turn (peak {_mb(peak)} MB)",
                        "target": f"< {TARGET_MB} MB RSS after 100,000 conversations",
                        "ratio": None, "verdict": verdict(ok)}}


def show(res: dict) -> None:
    print(f"\n== Memory: one `gateway worker`, {res['conversations']:,} conversations with flow state, one turn each")
    print(f"processed {res['processed']:,} turns in {res['drain_seconds']} s ({res['turns_per_s']}/s), "
          f"{res['replies_sent']:,} replies sent, {res['conversations_with_flow_state']:,} conversations hold flow state")
    print(f"RSS: idle {res['rss_idle_mb']} MB, peak {res['rss_peak_mb']} MB, final {res['rss_final_mb']} MB "
          f"(target < {TARGET_MB} MB) -> {res['summary']['verdict']}")
