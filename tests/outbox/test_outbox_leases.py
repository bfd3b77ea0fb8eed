"""Owned leases: renewed while a send runs, recovered at once when the owner's heartbeat stops."""
from __future__ import annotations

import asyncio

from gateway.devtools.fakes.replies import seed, unfinished
from gateway.devtools.testing import wait_for


async def test_lease_is_renewed_while_a_slow_send_runs(pool, clean, make_sender, fake_twilio):
    """Issue 19.2: a send outliving its lease was put back and sent again by another process."""
    await seed(pool, 1, 1)
    fake_twilio.delay_next(1, 4.0)
    slow, other = make_sender(name="slow"), make_sender(name="other")
    slow.lease = 1.5   # far shorter than the send: only renewal keeps it
    stop = asyncio.Event()
    tasks = [asyncio.create_task(slow.run(stop, poll_interval=0.05))]
    await wait_for(lambda: pool.fetchval("SELECT state = 'sending' FROM outbox"))
    tasks.append(asyncio.create_task(other.run(stop, poll_interval=0.05)))   # sweeps every 2 s
    try:
        await wait_for(lambda: _finished(pool), timeout=20)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert len(fake_twilio.requests) == 1
    assert await pool.fetchval("SELECT state FROM outbox") == "done"


async def test_rows_of_a_sender_whose_heartbeat_stopped_are_recovered_before_the_lease_ends(
        pool, clean, make_sender):
    """Issue 19.5: orphans waited for the whole 120 s lease after a crash."""
    await seed(pool, 2, 1)
    dead, alive = make_sender(name="dead"), make_sender(name="alive", outbox_orphan_after=3)
    dead.lease = 600
    assert len(await dead.claim(1)) == 1
    assert await alive.release_expired_leases() == 0          # its heartbeat is fresh
    await pool.execute("UPDATE outbox_senders SET heartbeat_at = now() - interval '4 seconds' WHERE name = 'dead'")
    assert await alive.release_expired_leases() == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'pending'") == 2


async def test_a_stopping_sender_signs_off_so_others_need_not_wait(pool, clean, make_sender):
    sender = make_sender(name="leaving")
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop, poll_interval=0.05))
    await wait_for(lambda: pool.fetchval("SELECT count(*) FROM outbox_senders WHERE name = 'leaving'"))
    stop.set()
    await task
    assert await pool.fetchval("SELECT count(*) FROM outbox_senders WHERE name = 'leaving'") == 0


async def _finished(pool) -> bool:
    return await unfinished(pool) == 0
