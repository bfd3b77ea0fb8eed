"""Concurrent sends' finishes share one round trip, and a batch that fails is redone item by item so
only the bad item's send sees the error; against the real finish statement too."""
from __future__ import annotations

import asyncio

from gateway.devtools.fakes.replies import seed
from gateway.pipeline.outbox import store
from gateway.pipeline.outbox.coalesce import Coalescer


async def test_ready_items_share_one_write_and_a_bad_one_fails_alone():
    writes: list[list[int]] = []

    async def write(items: list[int]) -> set:
        writes.append(list(items))
        if 13 in items:
            raise ValueError("unlucky")
        return {i for i in items if i % 2 == 0}   # odd ones "not owned any more"

    c = Coalescer(write, key=lambda i: i)
    results = await asyncio.gather(*(c.submit(i) for i in range(10)))
    assert writes == [list(range(10))]
    assert results == [i % 2 == 0 for i in range(10)]

    writes.clear()
    outcomes = await asyncio.gather(*(c.submit(i) for i in (12, 13, 14)), return_exceptions=True)
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], ValueError)
    assert writes == [[12, 13, 14], [12], [13], [14]]


async def test_finish_many_closes_only_rows_this_sender_owns(pool, clean, make_sender):
    await seed(pool, 3, per_conversation=1)
    first, second = make_sender(name="first"), make_sender(name="second")
    rows = await first.claim(3)
    await pool.execute("UPDATE outbox SET locked_until = now() - interval '1 second' WHERE id = $1", rows[2]["id"])
    assert await second.release_expired_leases() == 1
    [taken] = await second.claim(1)
    finished = {r["id"] for r in [rows[0], rows[1], rows[2]]}
    owned = await store.finish_many(pool, [
        (rows[0], {"state": "done", "status": "sent", "provider_message_id": "SMa", "segments": 1}),
        (rows[1], {"state": "failed", "status": "failed", "error_code": "21211", "error_message": "bad number"}),
        (rows[2], {"state": "failed", "status": "failed", "error_code": "x"}),   # lost its lease
    ])
    assert owned == finished - {rows[2]["id"]}
    states = {r["id"]: (r["state"], r["status"], r["provider_message_id"], r["last_error"]) for r in await pool.fetch(
        """SELECT o.id, o.state, m.status, m.provider_message_id, o.last_error FROM outbox o
           JOIN messages m ON m.id = o.message_id""")}
    assert states[rows[0]["id"]] == ("done", "sent", "SMa", None)
    assert states[rows[1]["id"]] == ("failed", "failed", None, "21211: bad number")
    assert states[taken["id"]][0] == "sending"     # the new owner's row is untouched
