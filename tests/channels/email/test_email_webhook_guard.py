"""Inbound email webhook: key before body, body caps, bounded large reads, Mailgun replay (issue 11 items 8, 9)."""
from __future__ import annotations

import asyncio

import aiohttp

from gateway.devtools.simulate_providers import simulated_mailgun_form
from gateway.devtools.testing import running_gateway

KEY = "email-webhook-key"


def email_settings(settings, **kw):
    return settings.with_(email_webhook_key=KEY, email_reply_domain="reply.example.com", **kw)


async def raw_post_head(url: str, path: str, length: int, first_bytes: bytes = b"--x\r\n",
                        content_type: str = "multipart/form-data; boundary=x"):
    """Open a POST announcing `length` bytes, send only `first_bytes`; returns (reader, writer)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + first_bytes)
    await writer.drain()
    return reader, writer


async def status_line(reader) -> int:
    line = await asyncio.wait_for(reader.readline(), 15)
    return int(line.split()[1])


async def test_unauthenticated_huge_body_is_refused_before_it_is_read(settings, pool, clean, redis_client):
    async with running_gateway(email_settings(settings), roles=("http",)) as (rt, url):
        # 12 posts announcing 29 MB each, none carrying the key: each is answered at once, unread.
        conns = [await raw_post_head(url, "/webhooks/email/inbound", 29 * 1024 * 1024) for _ in range(12)]
        statuses = await asyncio.gather(*(status_line(r) for r, _ in conns))
        wrong = await raw_post_head(url, "/webhooks/email/inbound?key=wrong", 29 * 1024 * 1024)
        wrong_status = await status_line(wrong[0])
        for _, w in [*conns, wrong]:
            w.close()
        # With the key, the same size is allowed up to GATEWAY_EMAIL_MAX_BYTES, and no further.
        over = await raw_post_head(url, f"/webhooks/email/inbound?key={KEY}", rt.settings.email_max_bytes + 1)
        over_status = await status_line(over[0])
        over[1].close()
    assert statuses == [413] * 12 and wrong_status == 413 and over_status == 413
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0


async def test_large_bodies_are_read_a_bounded_number_at_a_time(settings, pool, clean, redis_client):
    s = email_settings(settings, email_large_bodies=1)
    size = 2 * s.max_body_bytes
    async with running_gateway(s, roles=("http",)) as (rt, url):
        path = f"/webhooks/email/inbound?key={KEY}"
        reader, writer = await raw_post_head(url, path, size)          # holds the only slot, half sent

        async def second():
            async with aiohttp.ClientSession() as http:
                body = b"--x\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n" + b"a" * (size - 100)
                body += b"\r\n--x--\r\n"
                async with http.post(url + path, data=body,
                                     headers={"Content-Type": "multipart/form-data; boundary=x"}) as resp:
                    return resp.status
        task = asyncio.create_task(second())
        await asyncio.sleep(1.0)
        blocked = not task.done()
        writer.close()                                                # the first upload ends (aborted)
        second_status = await asyncio.wait_for(task, 30)
    assert blocked, "a second large body must wait while the only slot is taken"
    assert second_status in (400, 406)   # read once the slot was free, then refused as no email


async def post_form(url: str, form: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/webhooks/email/inbound", data=form) as resp:
            return resp.status, await resp.json()


async def test_a_signature_binds_one_post_even_under_30_concurrent_reuses(settings, pool, clean, redis_client):
    s = email_settings(settings)
    async with running_gateway(s, roles=("http",)) as (rt, url):
        base = simulated_mailgun_form(s, sender="victim@customer.example", recipient="support@example.com",
                                      subject="hello", text="original")
        forms = [{**base, "sender": f"attacker{i}@evil.example", "from": f"attacker{i}@evil.example",
                  "body-plain": f"forged {i}", "Message-Id": f"<forged{i}@evil.example>"} for i in range(30)]
        results = await asyncio.gather(*(post_form(url, f) for f in forms))
    stored = [r for r in results if r[0] == 200]
    assert len(stored) <= 1 and all(r[0] == 406 for r in results if r[0] != 200)
    assert await pool.fetchval("SELECT count(*) FROM messages") == len(stored)


async def test_a_captured_signed_form_resent_with_another_sender_is_refused(settings, pool, clean, redis_client):
    s = email_settings(settings)
    async with running_gateway(s, roles=("http",)) as (rt, url):
        form = simulated_mailgun_form(s, sender="ann@customer.example", recipient="support@example.com",
                                      subject="order", text="where is my order?")
        first = await post_form(url, form)
        retry = await post_form(url, form)           # Mailgun retrying the very same post
        forged = await post_form(url, {**form, "sender": "bob@customer.example", "from": "bob@customer.example",
                                       "body-plain": "send the invoice to mallory@evil.example"})
        same_sender_other_body = await post_form(url, {**form, "body-plain": "changed",
                                                       "Message-Id": "<other@customer.example>"})
    assert first[0] == 200 and retry[0] == 200 and retry[1]["duplicate"] is True
    assert forged[0] == 406 and forged[1]["error"]["code"] == "replayed_token"
    assert same_sender_other_body[0] == 406
    texts = [r["text"] for r in await pool.fetch("SELECT body AS text FROM messages")]
    assert texts == ["where is my order?"]
