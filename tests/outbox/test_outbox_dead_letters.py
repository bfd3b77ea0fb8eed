"""Issue 19.7: dead letters are visible where it matters (log, thread, metrics, API) and can be
requeued; the messages API shows provider id, attempts and last error; 21211 stops further tries."""
from __future__ import annotations

import asyncio

import aiohttp
from structlog.testing import capture_logs

from gateway.app.metrics import REGISTRY
from gateway.devtools.fakes.replies import number, seed
from gateway.devtools.testing import running_gateway

ADMIN = {"Authorization": "Bearer admin-test-token"}


def dead_letters_counted(error: str) -> float:
    return REGISTRY.get_sample_value("gateway_outbox_dead_letters_total",
                                     {"provider": "twilio", "error": error}) or 0.0


async def _send_until_settled(sender, pool, rounds=20):
    for _ in range(rounds):
        await sender.send_due()
        if not await pool.fetchval("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("outbox did not settle")


async def test_a_dead_letter_is_logged_shown_in_the_thread_counted_listed_and_requeued(
        settings, pool, clean, make_sender, fake_twilio):
    await seed(pool, 1, 2, max_attempts=2)
    fake_twilio.fail_next(2, http_status=500, code=20500, message="Internal Server Error")
    sender = make_sender()
    before = dead_letters_counted("20500")
    with capture_logs() as logs:
        await _send_until_settled(sender, pool)
    assert await pool.fetchval("SELECT array_agg(state ORDER BY id) FROM outbox") == ["dead", "done"]
    [line] = [e for e in logs if e["event"] == "outbox dead-lettered"]
    assert (line["conversation_id"], line["recipient"], line["error_code"]) == (1, number(1), "20500")
    assert line["message_id"] == await pool.fetchval("SELECT message_id FROM outbox WHERE state = 'dead'")
    assert dead_letters_counted("20500") == before + 1
    event = await pool.fetchrow("SELECT body, content FROM messages WHERE content->>'event' = 'dead_letter'")
    assert event["content"]["error_code"] == "20500" and event["content"]["attempts"] == 2

    async with running_gateway(settings, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/v1/dead-letters?channel=sms", headers=ADMIN) as r:
            assert r.status == 200, await r.text()
            [dead] = (await r.json())["dead_letters"]
        assert (dead["to_address"], dead["attempts"], dead["error_code"]) == (number(1), 2, "20500")
        async with http.get(f"{url}/api/v1/dead-letters?channel=pigeon", headers=ADMIN) as r:
            assert r.status == 400
        async with http.post(f"{url}/api/v1/dead-letters/{dead['outbox_id']}/requeue", headers=ADMIN) as r:
            assert r.status == 200, await r.text()
        async with http.post(f"{url}/api/v1/dead-letters/{dead['outbox_id']}/requeue", headers=ADMIN) as r:
            assert r.status == 409                                  # pending now, not dead
        async with http.post(f"{url}/api/v1/dead-letters/999999/requeue", headers=ADMIN) as r:
            assert r.status == 404
        await sender.send_due()
        async with http.get(f"{url}/api/v1/conversations/1/messages", headers=ADMIN) as r:
            messages = {m["body"]: m for m in (await r.json())["messages"]}
    first = messages["c1-1"]
    assert first["error_code"] is None and first["attempts"] == 1 and first["provider_message_id"].startswith("SM")
    assert first["last_error"] == "20500: gave up after 2 attempts: Internal Server Error"
    assert [m["body"] for m in fake_twilio.accepted()] == ["c1-2", "c1-1"]


async def test_an_invalid_number_is_marked_undeliverable_and_not_tried_again(pool, clean, make_sender,
                                                                            fake_twilio):
    await seed(pool, 1, 2)
    fake_twilio.fail_next(1, http_status=400, code=21211, message="The 'To' number is not a valid phone number.")
    sender = make_sender()
    await sender.send_due()
    assert len(fake_twilio.requests) == 1                           # the second message was never tried
    rows = await pool.fetch("SELECT m.error_code FROM outbox o JOIN messages m ON m.id = o.message_id ORDER BY o.id")
    assert [r["error_code"] for r in rows] == ["21211", "address_undeliverable"]
    assert await pool.fetchval("SELECT error_code FROM undeliverable_addresses WHERE address = $1", number(1)) == "21211"
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE content->>'event' = 'address_undeliverable'") == 1


async def test_erasure_forgets_what_the_outbox_kept_about_the_address(pool, clean, make_sender, fake_twilio):
    from gateway.domain import thread
    from gateway.inbox.privacy import erase_contact

    await seed(pool, 1, 1)
    await pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES (1, 'phone', $1)", number(1))
    fake_twilio.fail_next(1, http_status=400, code=21211, message="The 'To' number is not a valid phone number.")
    await make_sender().send_due()
    await pool.execute("INSERT INTO early_statuses (channel, provider_message_id, status, recipient) "
                       "VALUES ('sms', 'SMx', 'delivered', $1)", number(1))
    async with pool.acquire() as conn, conn.transaction():
        await erase_contact(conn, 1, thread.Effects())
    assert await pool.fetchval("SELECT count(*) FROM undeliverable_addresses") == 0
    assert await pool.fetchval("SELECT count(*) FROM early_statuses") == 0
