"""The outbox: signed API-channel webhooks, retries with backoff, dead-letter, consent at send time."""
from __future__ import annotations

import asyncio

import aiohttp

from gateway.devtools.testing import ApiChannelReceiver, running_gateway, wait_for
from gateway.domain import consent, thread
from gateway.domain.types import Channel, Purpose
from gateway.pipeline.outbox import backoff_delay

ADMIN = {"Authorization": "Bearer admin-test-token"}
SECRET = "hook-secret"


def BusinessWebhook():
    return ApiChannelReceiver(SECRET)


def api_settings(settings, hook, **kw):
    return settings.with_(default_handler="echo", api_channel_webhook_url=hook.url,
                          api_channel_webhook_secret=SECRET, **kw)


async def post(http, url, cmid, ext, text):
    async with http.post(f"{url}/api/v1/inbound", headers=ADMIN,
                         json={"client_message_id": cmid, "contact": {"external_id": ext}, "text": text}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def test_bot_reply_is_delivered_as_signed_webhook(settings, pool, clean, redis_client):
    async with BusinessWebhook() as hook:
        async with running_gateway(api_settings(settings, hook)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                created = await post(http, url, "m1", "cust-1", "Hola")

            async def delivered():
                return hook.received
            await wait_for(delivered)
    body = hook.received[0]
    assert body["to"] == "cust-1" and body["text"] == "You said: Hola"
    assert hook.idempotency_keys[0] == f"msg-{body['message_id']}"
    row = await pool.fetchrow("SELECT status, provider_message_id, seq FROM messages WHERE id = $1",
                              body["message_id"])
    assert row["status"] == "delivered" and row["seq"] == created["seq"] + 1


async def test_transient_failures_are_retried_then_delivered_once(settings, pool, clean, redis_client):
    async with BusinessWebhook() as hook:
        hook.fail_next = 3
        async with running_gateway(api_settings(settings, hook)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                await post(http, url, "m1", "cust-1", "retry me")

            async def delivered():
                return hook.received
            await wait_for(delivered, timeout=20)
            await asyncio.sleep(0.5)
    assert len(hook.received) == 1
    outbox = await pool.fetchrow("SELECT state, attempts FROM outbox")
    assert outbox["state"] == "done" and outbox["attempts"] == 4


async def test_persistent_failure_is_dead_lettered_after_max_attempts(settings, pool, clean, redis_client):
    async with BusinessWebhook() as hook:
        hook.fail_next = 1000
        async with running_gateway(api_settings(settings, hook, outbox_max_attempts=3)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                await post(http, url, "m1", "cust-1", "never")

            async def dead():
                return await pool.fetchval("SELECT state = 'dead' FROM outbox")
            await wait_for(dead, timeout=20)
    row = await pool.fetchrow("SELECT m.status, m.error_code, o.attempts FROM outbox o JOIN messages m "
                              "ON m.id = o.message_id")
    assert row["status"] == "failed" and row["error_code"] == "503" and row["attempts"] == 3
    assert hook.received == []


async def test_client_error_fails_permanently_without_retry(settings, pool, clean, redis_client):
    async with BusinessWebhook() as hook:
        hook.fail_next, hook.fail_status = 1, 422
        async with running_gateway(api_settings(settings, hook)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                await post(http, url, "m1", "cust-1", "bad")

            async def failed():
                return await pool.fetchval("SELECT state = 'failed' FROM outbox")
            await wait_for(failed)
    assert await pool.fetchval("SELECT attempts FROM outbox") == 1


async def test_consent_is_checked_at_send_time_not_only_when_queued(settings, pool, clean, redis_client):
    """A marketing message queued before the customer opted out is not sent after."""
    async with BusinessWebhook() as hook:
        async with running_gateway(api_settings(settings, hook), roles=("http",)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                created = await post(http, url, "m1", "cust-1", "hi")
            async with pool.acquire() as conn, conn.transaction():
                mid = await thread.queue_outbound(conn, created["conversation_id"], text="20% off!",
                                                  author_type="journey", purpose=Purpose.MARKETING,
                                                  channel=Channel.API)
                await consent.set_consent(conn, kind="api", address="cust-1", channel="api",
                                          purpose=consent.MARKETING, granted=False, source="test")
            await rt.outbox.send_due()
    row = await pool.fetchrow("SELECT status, error_code FROM messages WHERE id = $1", mid)
    assert row["status"] == "failed" and row["error_code"] == "no_marketing_consent"
    assert await pool.fetchval("SELECT state FROM outbox WHERE message_id = $1", mid) == "skipped"
    assert hook.received == []


async def test_expired_lease_is_released_and_sent_by_another_sender(settings, pool, clean, redis_client):
    async with BusinessWebhook() as hook:
        async with running_gateway(api_settings(settings, hook), roles=("http",)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                created = await post(http, url, "m1", "cust-1", "hi")
            async with pool.acquire() as conn, conn.transaction():
                await thread.queue_outbound(conn, created["conversation_id"], text="lease", author_type="bot",
                                            channel=Channel.API)
            claimed = await rt.outbox.claim(10)        # a sender claims it, then dies
            assert len(claimed) == 1
            assert await rt.outbox.send_due() == 0      # leased: nobody else sends it
            await pool.execute("UPDATE outbox SET locked_until = now() - interval '1 second'")
            assert await rt.outbox.release_expired_leases() == 1
            assert await rt.outbox.send_due() == 1
    assert [r["text"] for r in hook.received] == ["lease"]


def test_backoff_grows_exponentially_is_capped_and_respects_retry_after():
    import random

    rng = random.Random(7)
    samples = [max(backoff_delay(a, base=1, cap=60, rng=rng) for _ in range(200)) for a in (1, 3, 6, 10)]
    assert samples[0] <= 1 and samples[1] <= 4 and samples[2] <= 32 and samples[3] <= 60
    assert samples[0] < samples[1] < samples[2]
    assert backoff_delay(1, base=1, cap=60, retry_after=30, rng=rng) >= 30


async def test_messages_of_one_conversation_leave_in_order_even_across_retries(settings, pool, clean,
                                                                               redis_client):
    async with BusinessWebhook() as hook:
        hook.fail_next = 1  # the first message fails once and waits for its retry
        async with running_gateway(api_settings(settings, hook), roles=("http",)) as (rt, url):
            async with aiohttp.ClientSession() as http:
                created = await post(http, url, "m1", "cust-1", "hi")
            async with pool.acquire() as conn, conn.transaction():
                for text in ("one", "two", "three"):
                    await thread.queue_outbound(conn, created["conversation_id"], text=text, author_type="bot",
                                                channel=Channel.API)
            await rt.outbox.send_due()         # "one" fails; "two" and "three" must wait for it
            assert hook.received == []
            await pool.execute("UPDATE outbox SET next_attempt_at = now()")
            await rt.outbox.send_due()
    assert [r["text"] for r in hook.received] == ["one", "two", "three"]
