"""`gateway simulate email` twice from one sender stores two mails (each carries its own Message-Id)."""
from __future__ import annotations

import json
from types import SimpleNamespace

from gateway.devtools.simulate_channels import send
from gateway.devtools.testing import running_gateway


async def test_every_simulated_mail_from_one_sender_is_stored(settings, pool, clean, redis_client):
    s = settings.with_(email_webhook_key="email-webhook-key", email_reply_domain="reply.example.com")
    async with running_gateway(s, roles=("http",)) as (rt, url):
        answers = []
        for text in ("first question", "second question", "third question"):
            args = SimpleNamespace(channel="email", from_="ann@customer.example", to=None, subject="help",
                                   text=text)
            status, body = await send(args, s, url)
            assert status == 200, body
            answers.append(json.loads(body))
    assert [a.get("duplicate") for a in answers] == [False, False, False]
    assert [r["body"] for r in await pool.fetch("SELECT body FROM messages WHERE direction = 'in' ORDER BY seq")] \
        == ["first question", "second question", "third question"]
