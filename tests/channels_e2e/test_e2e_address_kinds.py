"""A customer known on WhatsApp by a user id (not a phone number) keeps that identity kind on every
outbound message, so consent is checked against it, also for a long reply split in several parts."""
from __future__ import annotations

from gateway.channels.whatsapp.secrets import whatsapp_app_secret
from gateway.devtools.simulate_providers import meta_inbound_payload, post_meta_webhook
from gateway.devtools.testing import running_gateway, wait_for
from gateway.domain import consent

BSUID = "US.13491208655302741918"   # a business-scoped user id: WhatsApp without a phone number


async def test_a_long_whatsapp_reply_split_in_parts_is_consent_checked_under_the_whatsapp_id(
        settings, pool, clean, redis_client, http):
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        status, _ = await post_meta_webhook(f"{url}/webhooks/whatsapp",
                                            meta_inbound_payload(BSUID, "hello", "1234567890"),
                                            whatsapp_app_secret(rt.settings))
        assert status == 200
        conv = await wait_for(lambda: pool.fetchval("SELECT id FROM conversations"))
        assert await pool.fetchval("SELECT kind FROM identities WHERE address = $1", BSUID) == "whatsapp_id"
        long_text = " ".join(["A sentence of the agent's long answer."] * 150)   # > 4096 characters
        async with http.post(f"{url}/api/v1/conversations/{conv}/messages", json={"text": long_text},
                             headers={"Authorization": f"Bearer {rt.settings.admin_token}"}) as resp:
            assert resp.status == 201, await resp.text()
        rows = await pool.fetch("SELECT channel, to_address, payload FROM outbox ORDER BY id")
        assert len(rows) == 2 and all(r["channel"] == "whatsapp" and r["to_address"] == BSUID for r in rows)
        assert [r["payload"]["kind"] for r in rows] == ["whatsapp_id", "whatsapp_id"]
        # the customer opts out before the parts go: none of them may be sent
        async with pool.acquire() as conn:
            await consent.set_consent(conn, kind="whatsapp_id", address=BSUID, channel="whatsapp",
                                      purpose=consent.ALL, granted=False, source="test:customer")
        await rt.outbox.send_due()
        states = await pool.fetch("SELECT state, error_code FROM outbox o JOIN messages m ON m.id = o.message_id")
        assert [(r["state"], r["error_code"]) for r in states] == [("skipped", "opted_out")] * 2
        assert rt.senders[next(c for c in rt.senders if c.value == "whatsapp")].sent == []
