"""Sends run independently: a hung send holds only its own conversation; a 429 pauses its sender."""
from __future__ import annotations

import asyncio
import time

from gateway.devtools.fakes.replies import number, seed, unfinished
from gateway.devtools.testing import wait_for


async def _run(sender, until, timeout=30.0):
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop, poll_interval=0.05))
    try:
        return await wait_for(until, timeout=timeout)
    finally:
        stop.set()
        await task


async def test_a_hung_send_delays_only_its_own_conversation(pool, clean, make_sender, fake_twilio):
    """Issue 19.3: one number that always hangs held back everyone's replies for its timeout."""
    await seed(pool, 20, 2)
    hung = number(1)
    fake_twilio.hang_for(hung)
    sender = make_sender(timeout=4.0, outbox_batch=5)
    started = time.monotonic()

    async def others_done():
        return len([m for m in fake_twilio.accepted() if m["to"] != hung]) == 38 and time.monotonic() - started

    elapsed = await _run(sender, others_done)
    assert elapsed < 3.5, f"unrelated replies waited {elapsed:.1f} s behind a hung send"
    assert await pool.fetchval("SELECT state FROM outbox o JOIN messages m ON m.id = o.message_id "
                               "WHERE m.body = 'c1-2'") == "pending"    # its own next reply waits


async def test_a_429_pauses_its_sender_for_retry_after_without_rate_limits(pool, clean, make_sender, fake_twilio):
    """Issue 19.4: dozens more requests hit the sender inside the Retry-After window."""
    await seed(pool, 30, 1)
    fake_twilio.fail_next(1, http_status=429, code=20429, message="Too Many Requests", retry_after=2, after=3)
    sender = make_sender(outbox_concurrency=2, outbox_max_concurrency=2)   # rate limits off (the default)

    async def done():
        return await unfinished(pool) == 0

    await _run(sender, done)
    throttled_at = next(r.at for r in fake_twilio.requests if r.status == 429)
    inside = [r.at - throttled_at for r in fake_twilio.requests if 0 < r.at - throttled_at < 1.9]
    # at most the other sends already in flight when the 429 came back may land inside the window
    assert len(inside) <= 1, inside
    assert len(fake_twilio.accepted()) == 30


async def test_rows_are_claimed_only_as_fast_as_the_rate_limit_lets_them_go(pool, clean, make_sender, fake_twilio):
    """Issue 19.2: a pass claimed 200 rows at 2 sends/s and held their leases while they waited."""
    await seed(pool, 12, 1)
    sender = make_sender(rate_limit_per_second=4, rate_limit_burst=1)
    most_in_flight = 0

    async def done():
        nonlocal most_in_flight
        most_in_flight = max(most_in_flight, await pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'sending'"))
        return await unfinished(pool) == 0

    await _run(sender, done)
    assert len(fake_twilio.accepted()) == 12
    assert most_in_flight <= 3, most_in_flight


async def test_sends_in_flight_grow_while_a_slow_provider_has_work_waiting(pool, clean, make_sender, fake_twilio):
    """Issue 19.3: with every send taking 5 s, throughput was stuck at 32 in flight / 5 s."""
    await seed(pool, 100, 1)
    fake_twilio.latency = 1.0
    sender = make_sender(outbox_concurrency=4, outbox_max_concurrency=64)
    started = time.monotonic()
    most_in_flight = 0

    async def done():
        nonlocal most_in_flight
        most_in_flight = max(most_in_flight, sum(sender.gate.in_flight.values()))
        return await unfinished(pool) == 0 and time.monotonic() - started

    elapsed = await _run(sender, done, timeout=40)
    assert most_in_flight >= 16, most_in_flight
    # 4 at a time would take 25 s, one more slot per round trip about 11 s; doubling per round trip ~5 s
    assert elapsed < 9, f"100 sends at 1 s each took {elapsed:.1f} s"
