"""Timer benchmark: firing costs what is due, not what is scheduled.

Seeds `n_scheduled` timers with COPY, `n_due` of them due, the rest far in the future, then lets a
TimerService fire the due ones (a no-op handler) and reports how long that took, the plan of the
claim query (the partial index on due_at), and the time of one claim with and without that index.

It is safe against a live database: the bench timers are due around 2000-01-01 and fired by a
TimerService whose clock stands at 2000-01-01, so real timers (due around now) are never claimed,
and every bench row is deleted at the end.

    asyncio.run(timer_bench(pool, n_scheduled=1_000_000, n_due=10_000))
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import asyncpg

from gateway.domain import timers
from gateway.domain.timers import CLAIM, Batch, ManualClock, TimerService

BENCH_KIND = "bench_noop"
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)


async def _noop(conn, timers, effects) -> None:
    return None


async def timer_bench(pool: asyncpg.Pool, n_scheduled: int = 1_000_000, n_due: int = 10_000,
                      batch: int = 500) -> dict:
    if not 0 < n_due <= n_scheduled:
        raise ValueError("need 0 < n_due <= n_scheduled")
    async with pool.acquire() as conn:
        await timers.purge(conn, BENCH_KIND)
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "timers", columns=["kind", "due_at"],
            records=((BENCH_KIND, EPOCH - timedelta(seconds=i) if i < n_due else FUTURE + timedelta(seconds=i))
                     for i in range(n_scheduled)))
        seed_seconds = time.perf_counter() - started
        await conn.execute("ANALYZE timers")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + CLAIM, EPOCH, 200))
        with_index = await _time_claim(conn, indexed=True)
        without_index = await _time_claim(conn, indexed=False)
    service = TimerService(pool, {BENCH_KIND: Batch(_noop)}, clock=ManualClock(EPOCH), batch=batch)
    started = time.perf_counter()
    while await service.fire_due():
        pass
    fire_seconds = time.perf_counter() - started
    async with pool.acquire() as conn:
        fired = await conn.fetchval("SELECT count(*) FROM timers WHERE kind = $1 AND state = 'done'", BENCH_KIND)
        await timers.purge(conn, BENCH_KIND)
    return {
        "scheduled": n_scheduled, "due": n_due, "fired": fired,
        "seed_seconds": round(seed_seconds, 3), "fire_seconds": round(fire_seconds, 3),
        "fired_per_second": round(fired / fire_seconds, 1) if fire_seconds else None,
        "claim_ms_with_index": round(with_index * 1000, 3),
        "claim_ms_without_index": round(without_index * 1000, 3),
        "uses_partial_index": "timers_due" in plan, "plan": plan,
    }


async def _time_claim(conn: asyncpg.Connection, *, indexed: bool) -> float:
    """One claim query (its row locks end with the transaction), with or without the index."""
    async with conn.transaction():
        if not indexed:
            await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
        started = time.perf_counter()
        await conn.fetch(CLAIM, EPOCH, 200)
        return time.perf_counter() - started


def format_result(result: dict) -> str:
    """Print-friendly summary for `gateway bench`."""
    return (f"timers: {result['scheduled']:,} scheduled, {result['due']:,} due -> fired {result['fired']:,} "
            f"in {result['fire_seconds']}s ({result['fired_per_second']}/s)\n"
            f"one claim of 200: {result['claim_ms_with_index']} ms with the partial index, "
            f"{result['claim_ms_without_index']} ms without\n"
            f"claim plan uses timers_due: {result['uses_partial_index']}\n{result['plan']}")
