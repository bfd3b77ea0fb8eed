"""Timers fire in batches: one claim, a batch handler gets every timer of its kind at once, one
statement marks them done; a failing batch is retried timer by timer so one bad timer fails alone."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.domain import timers
from gateway.domain.timers import Batch, ManualClock, TimerService

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


async def _schedule(pool, kind: str, n: int, **payload) -> list[int]:
    async with pool.acquire() as conn:
        return [await timers.schedule(conn, kind=kind, due_at=NOW - timedelta(seconds=i), payload={"i": i, **payload})
                for i in range(n)]


async def test_batch_handler_gets_the_whole_kind_in_one_call_and_effects_after_commit(pool, clean):
    await _schedule(pool, "bulk", 120)
    calls, published = [], []

    async def handler(conn, due, effects):
        calls.append(len(due))
        # the handler's writes are in the claiming transaction: done marks are not visible yet
        assert await conn.fetchval("SELECT count(*) FROM timers WHERE state = 'done'") == 0
        effects.emit("bulk.fired", count=len(due))

    async def after_commit(effects):
        published.extend(effects.events)

    service = TimerService(pool, {"bulk": Batch(handler)}, clock=ManualClock(NOW), batch=500,
                           after_commit=after_commit)
    assert await service.fire_due() == 120
    assert calls == [120]
    assert published == [("bulk.fired", {"count": 120})]
    assert await pool.fetchval("SELECT count(*) FROM timers WHERE state = 'done' AND attempts = 1") == 120
    assert await service.fire_due() == 0


async def test_a_bad_timer_in_a_batch_fails_alone(pool, clean):
    await pool.execute("DROP TABLE IF EXISTS timer_test_writes; CREATE TABLE timer_test_writes (id bigint)")
    ids = await _schedule(pool, "bulk", 10)
    bad = ids[3]
    seen, published = [], []

    async def handler(conn, due, effects):
        # a write per timer: a failed batch must leave none of them behind
        await conn.execute("INSERT INTO timer_test_writes SELECT unnest($1::bigint[])", [t["id"] for t in due])
        if any(t["id"] == bad for t in due):
            raise ValueError("this one is broken")
        seen.extend(t["id"] for t in due)
        effects.emit("bulk.fired", ids=[t["id"] for t in due])

    async def after_commit(effects):
        published.extend(effects.events)

    service = TimerService(pool, {"bulk": Batch(handler)}, clock=ManualClock(NOW), after_commit=after_commit)
    assert await service.fire_due() == 10
    assert sorted(seen) == sorted(i for i in ids if i != bad)
    assert {e[1]["ids"][0] for e in published} == set(seen)     # only what committed is published
    rows = {r["id"]: r for r in await pool.fetch("SELECT id, state, attempts, due_at FROM timers")}
    assert all(rows[i]["state"] == "done" for i in ids if i != bad)
    assert rows[bad]["state"] == "pending" and rows[bad]["attempts"] == 1 and rows[bad]["due_at"] > NOW
    written = [r["id"] for r in await pool.fetch("SELECT id FROM timer_test_writes")]
    await pool.execute("DROP TABLE timer_test_writes")
    assert sorted(written) == sorted(seen)        # the failed batch's writes were rolled back


async def test_single_timer_handlers_and_batch_handlers_share_one_claim(pool, clean):
    await _schedule(pool, "one", 5)
    await _schedule(pool, "many", 7)
    singles, batches = [], []

    async def one(conn, timer, effects):
        singles.append(timer["id"])

    async def many(conn, due, effects):
        batches.append(len(due))

    service = TimerService(pool, {"one": one, "many": Batch(many)}, clock=ManualClock(NOW))
    assert await service.fire_due() == 12
    assert len(singles) == 5 and batches == [7]
    assert await pool.fetchval("SELECT count(*) FROM timers WHERE state = 'done'") == 12
