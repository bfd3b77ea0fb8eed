"""Data retention against the real PostgreSQL: expired messages become tombstones in their thread
(per channel limits), work still in progress is held back and expired later, and events, audit
entries and unused attachments go by age, in small batches."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.domain.blobs import store_blob
from gateway.retention import Retention, parse_channel_days

NOW = datetime.now(timezone.utc)


async def thread(pool, channel: str, ages_days: list[float], *, processed: bool = True) -> int:
    """A contact and conversation with one inbound message per age (seq in age order, oldest first)."""
    contact = await pool.fetchval("INSERT INTO contacts (name) VALUES ('Ada') RETURNING id")
    cid = await pool.fetchval(
        """INSERT INTO conversations (contact_id, last_seq, last_inbound_channel, last_message_at)
           VALUES ($1, $2, $3, now()) RETURNING id""", contact, len(ages_days), channel)
    for seq, age in enumerate(ages_days, 1):
        at = NOW - timedelta(days=age)
        await pool.execute(
            """INSERT INTO messages (conversation_id, seq, direction, channel, body, content, sender_address,
                                     provider_message_id, author_type, created_at, processed_at)
               VALUES ($1, $2, 'in', $3, $4, $5, '+15550001111', $6, 'customer', $7, $8)""",
            cid, seq, channel, f"secret {seq}", {"attachments": [{"content_ref": f"sha256:{cid}-{seq}"}]},
            f"{channel}-{cid}-{seq}", at, at if processed else None)
    return cid


async def rows(pool, cid: int):
    return await pool.fetch("""SELECT seq, body, content, sender_address, provider_message_id, expired_at
                               FROM messages WHERE conversation_id = $1 ORDER BY seq""", cid)


async def test_expired_messages_become_tombstones_in_order_with_per_channel_limits(settings, pool, clean):
    sms = await thread(pool, "sms", [40, 39, 35, 2, 1, 0])
    email = await thread(pool, "email", [100, 50])
    old_email = await thread(pool, "email", [400])
    s = settings.with_(retention_messages_days=30, retention_channel_days="email=365", retention_batch=2,
                       retention_pause=0)
    done = await Retention(pool, s).run_once()
    assert done["messages"] == 4
    kept = await rows(pool, sms)
    assert [r["seq"] for r in kept] == [1, 2, 3, 4, 5, 6], "tombstones keep the thread's order"
    for r in kept[:3]:
        assert (r["body"], r["content"], r["sender_address"]) == ("", {}, None) and r["expired_at"]
        assert r["provider_message_id"].startswith("erased:"), "a provider id may carry the address"
    assert [r["body"] for r in kept[3:]] == ["secret 4", "secret 5", "secret 6"]
    from gateway.inbox.queries import list_messages
    from gateway.inbox.scope import Scope

    async with pool.acquire() as conn:
        page = await list_messages(conn, Scope(everything=True), sms, limit=10)
    assert [m["expired_at"] is not None for m in page["messages"]] == [True] * 3 + [False] * 3
    assert all(r["expired_at"] is None for r in await rows(pool, email)), "email is kept a year"
    assert (await rows(pool, old_email))[0]["expired_at"] is not None
    assert await Retention(pool, s).run_once() == {"messages": 0, "blobs": 0, "events": 0, "audit": 0}


async def test_messages_still_at_work_are_held_back_then_expired(settings, pool, clean):
    waiting = await thread(pool, "sms", [50], processed=False)
    later = await thread(pool, "sms", [45])
    s = settings.with_(retention_messages_days=30, retention_batch=10, retention_pause=0)
    assert (await Retention(pool, s).run_once())["messages"] == 1
    assert (await rows(pool, waiting))[0]["body"] == "secret 1", "an unprocessed message is never emptied"
    assert (await rows(pool, later))[0]["expired_at"] is not None
    await pool.execute("UPDATE messages SET processed_at = now() WHERE conversation_id = $1", waiting)
    assert (await Retention(pool, s).run_once())["messages"] == 1
    assert (await rows(pool, waiting))[0]["expired_at"] is not None


async def test_events_audit_and_unused_attachments_go_by_age(settings, pool, clean):
    contact = await pool.fetchval("INSERT INTO contacts (name) VALUES ('Bo') RETURNING id")
    for i, age in enumerate([90, 80, 70, 1]):
        at = NOW - timedelta(days=age)
        await pool.execute("""INSERT INTO events (event_key, contact_id, name, occurred_at, created_at)
                              VALUES ($1, $2, 'signup', $3, $3)""", f"k{i}", contact, at)
        await pool.execute("INSERT INTO audit_log (actor_type, action, created_at) VALUES ('agent', 'x', $1)", at)
    async with pool.acquire() as conn:
        for ref in ("old", "reused", "young"):
            await store_blob(conn, ref, "image/png", b"png")
    await pool.execute("UPDATE blobs SET created_at = now() - interval '60 days' WHERE ref IN ('old', 'reused')")
    async with pool.acquire() as conn:
        await store_blob(conn, "reused", "image/png", b"png")   # the same file arrives again today
    s = settings.with_(retention_events_days=30, retention_audit_days=60, retention_attachments_days=30,
                       retention_batch=2, retention_pause=0)
    done = await Retention(pool, s).run_once()
    assert done == {"messages": 0, "blobs": 1, "events": 3, "audit": 3}
    assert await pool.fetchval("SELECT count(*) FROM events") == 1
    assert sorted(r["ref"] for r in await pool.fetch("SELECT ref FROM blobs")) == ["reused", "young"]


def test_channel_limits_are_checked():
    assert parse_channel_days("email=365, sms=30") == {"email": 365.0, "sms": 30.0}
    for bad in ("email", "email=x", "=3", "sms=-1"):
        with pytest.raises(ValueError):
            parse_channel_days(bad)


async def test_the_worker_enforces_retention_on_its_timer(settings, pool, clean, redis_client):
    from gateway.devtools.testing import running_gateway, wait_for

    cid = await thread(pool, "sms", [40, 0])
    s = settings.with_(retention_messages_days=30, retention_interval=0.2)
    async with running_gateway(s, roles=("worker",)):
        async def expired():
            return (await rows(pool, cid))[0]["expired_at"] is not None
        await wait_for(expired, timeout=30, message="the worker's retention timer did not run")
    assert (await rows(pool, cid))[1]["body"] == "secret 2"


async def test_an_attachment_past_its_limit_answers_410_and_is_not_fetched_again(settings, pool, clean,
                                                                                  redis_client):
    import aiohttp

    from gateway.devtools.testing import running_gateway

    cid = await thread(pool, "sms", [40])
    mid = await pool.fetchval("SELECT id FROM messages WHERE conversation_id = $1", cid)
    ref = f"sha256:{cid}-1"
    async with pool.acquire() as conn:
        await store_blob(conn, ref, "image/png", b"png")
    await pool.execute("UPDATE blobs SET created_at = now() - interval '40 days'")
    assert (await Retention(pool, settings.with_(retention_attachments_days=30)).run_once())["blobs"] == 1
    async with running_gateway(settings, roles=("http",)) as (rt, url):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/v1/conversations/{cid}/messages/{mid}/attachments/0",
                                headers={"Authorization": "Bearer admin-test-token"}) as resp:
                assert resp.status == 410
                assert (await resp.json())["error"]["code"] == "expired"
