"""A conversation's next message goes only after the previous one is accepted or finally failed,
whatever the batch size, the failures or the number of senders."""
from __future__ import annotations

import asyncio

from gateway.devtools.fakes.replies import order_report, seed, unfinished
from gateway.devtools.fakes.twilio import Misbehaviour
from gateway.devtools.testing import wait_for
from gateway.pipeline.outbox import store


async def _done(pool) -> bool:
    return await unfinished(pool) == 0


async def test_claim_takes_only_conversation_heads(pool, clean, make_sender):
    await seed(pool, 2, per_conversation=3)
    sender = make_sender()
    rows = await sender.claim(10)
    assert sorted(r["seq"] for r in rows) == [1, 1]
    assert await sender.claim(10) == []          # the heads are in flight: nothing else may go


async def test_order_holds_under_failures_with_small_batches(pool, clean, make_sender, fake_twilio):
    """Issue 19.1: with more sends due than a batch holds, a retried message was overtaken."""
    await seed(pool, 30, per_conversation=3)
    fake_twilio.chaos(Misbehaviour(server_error=0.4, seed=19))
    sender = make_sender(outbox_batch=4, outbox_base_delay=0.02, outbox_max_delay=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop, poll_interval=0.05))
    try:
        await wait_for(lambda: _done(pool), timeout=40)
    finally:
        stop.set()
        await task
    report = order_report([(m["to"], m["body"]) for m in fake_twilio.accepted()])
    assert (report.accepted, report.duplicates, report.out_of_order) == (90, 0, 0), report.examples
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE state = 'done'") == 90
    assert any(f == "server_error" for _, _, f in fake_twilio.fates)


async def test_a_finally_failed_message_lets_the_next_one_go(pool, clean, make_sender, fake_twilio):
    await seed(pool, 1, per_conversation=2)
    fake_twilio.fail_next(1, http_status=400, code=21617, message="too long")
    sender = make_sender()
    assert await sender.send_due() == 2
    assert [m["body"] for m in fake_twilio.accepted()] == ["c1-2"]
    assert await pool.fetchval("SELECT array_agg(state ORDER BY id) FROM outbox") == ["failed", "done"]


async def test_stale_claim_token_cannot_finish_a_row(pool, clean, make_sender):
    """Issue 19.2: a sender whose lease was taken over must not overwrite the new owner's work."""
    await seed(pool, 1, per_conversation=1)
    first, second = make_sender(name="first"), make_sender(name="second")
    [old] = await first.claim(1)
    await pool.execute("UPDATE outbox SET locked_until = now() - interval '1 second'")
    assert await second.release_expired_leases() == 1
    [new] = await second.claim(1)
    assert new["claim_token"] != old["claim_token"]
    assert not await store.schedule_retry(pool, old, 5, "x: y", outcome_unknown=False)
    assert not await store.finish(pool, old, state="failed", status="failed", error_code="x")
    assert await store.finish(pool, new, state="done", status="sent", provider_message_id="SM1")
    assert await pool.fetchval("SELECT state FROM outbox") == "done"
