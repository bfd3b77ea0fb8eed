"""Group commit: concurrent ingests share transactions, results stay exact and durable."""
from __future__ import annotations

import asyncio

from gateway.devtools.testing import running_gateway
from gateway.domain.inputs import InputError
from gateway.domain.types import Channel, Inbound
from gateway.pipeline import intake


def sms(mid: str, sender: str, text: str) -> Inbound:
    return Inbound(channel=Channel.SMS, provider="twilio", provider_message_id=mid, sender=sender, text=text)


async def test_concurrent_ingest_is_batched_and_exact(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        messages = [sms(f"SM{c}-{i}", f"+1415555{c:04d}", f"m{i}") for i in range(10) for c in range(40)]
        messages += [sms("SM0-0", "+14155550000", "m0")] * 5   # provider retries inside the burst
        results = await asyncio.gather(*(intake.accept(rt, m) for m in messages))
        assert rt.batcher.batches < len(messages) / 2, "no batching happened"
        assert rt.batcher.items == len(messages)
    fresh = [r for r in results if not r.duplicate]
    assert len(fresh) == 400
    dup_ids = {r.message_id for r in results[400:]}
    assert dup_ids == {results[0].message_id}
    assert await pool.fetchval("SELECT count(*) FROM messages") == 400
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 40
    # per conversation: seqs 1..10 without gaps, in the order each customer's messages were submitted
    for row in await pool.fetch("SELECT conversation_id, array_agg(body ORDER BY seq) AS bodies, "
                                "array_agg(seq ORDER BY seq) AS seqs FROM messages GROUP BY conversation_id"):
        assert row["seqs"] == list(range(1, 11))
        assert sorted(row["bodies"], key=lambda b: int(b[1:])) == [f"m{i}" for i in range(10)]
    queued = sum([await rt.redis.xlen(s) for s in rt.keys.streams()])
    assert queued >= 40  # every conversation with new messages was enqueued


async def test_a_batch_the_database_refuses_is_retried_item_by_item(settings, pool, clean, redis_client):
    """A check the code does not know about (a constraint) refuses one item of a batch: that item
    alone fails (InputError, a 400 at the edge), every other one is stored and answered."""
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        await pool.execute("ALTER TABLE messages ADD CONSTRAINT no_boom CHECK (body <> 'boom')")
        try:
            results = await asyncio.gather(*(intake.accept(rt, sms(f"SMx{i}", f"+1415666{i:04d}",
                                                                   "boom" if i == 5 else "ok"))
                                             for i in range(40)), return_exceptions=True)
        finally:
            await pool.execute("ALTER TABLE messages DROP CONSTRAINT no_boom")
        assert rt.batcher.batches < 40, "the items were never batched"
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == [5] and isinstance(results[5], InputError)
    assert await pool.fetchval("SELECT count(*) FROM messages") == 39
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE body = 'boom'") == 0
