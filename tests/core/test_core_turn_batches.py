"""Batched turns (GATEWAY_WORKER_BATCH): one transaction takes the next message of many
conversations, and keeps every promise a single turn keeps."""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import LocalServer, kill_a_worker_mid_batch, running_gateway, wait_for

FLOWS = Path(__file__).resolve().parents[2] / "flows"
OUR = "+15550001111"
DONE = "SELECT count(*) FROM messages WHERE direction = 'in' AND processed_at IS NOT NULL"


async def test_worker_killed_in_the_middle_of_batches_processes_each_message_once_in_order(
        settings, pool, clean, redis_client, spawn, tmp_path):
    """150 conversations with 4 messages each, batches of 50: the first worker is SIGKILLed while
    its batches run, a second finishes; each message processed once, in order, answered once."""
    await kill_a_worker_mid_batch(settings, pool, spawn, tmp_path, conversations=150, per_conversation=4,
                                  kill_after=120, GATEWAY_WORKER_BATCH=50, GATEWAY_WORKER_CONCURRENCY=2)
    # batches were committed: one transaction (one processed_at) for many conversations
    widest = await pool.fetchval(
        """SELECT max(n) FROM (SELECT count(DISTINCT conversation_id) AS n FROM messages
                               WHERE direction = 'in' GROUP BY processed_at) b""")
    assert widest > 1, "no batch was committed: every turn had its own transaction"
    assert await pool.fetchval("SELECT max(process_attempts) FROM messages WHERE direction = 'in'") <= 2


class HeldOrderApi(LocalServer):
    """The business's order API; an answer for AB99999 waits until the test releases it."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self.release = asyncio.Event()

    def routes(self, app):
        app.router.add_get("/orders/{id}", self.order)

    async def order(self, request):
        self.calls.append(request.match_info["id"])
        if request.match_info["id"] == "AB99999":
            await self.release.wait()
        return web.json_response({"status": "shipped", "eta": "2026-11-30"})


async def test_a_turn_waiting_on_an_http_action_holds_no_batch(settings, pool, clean, redis_client):
    """A customer whose first message runs the order look-up is taken out of the batch before the
    request goes out (the API is called once) and waits alone; the others of its batch are answered
    meanwhile."""
    async with FakeTwilio() as fake, HeldOrderApi() as api:
        s = settings.with_(default_handler="flow", flows_dir=FLOWS, twilio_account_sid=fake.account_sid,
                           twilio_auth_token=fake.auth_token, twilio_from_number=OUR,
                           twilio_api_base=fake.base_url, business_api_base=api.base_url, worker_batch=20)
        customers = [f"+1415555{n:04d}" for n in range(11)]
        async with running_gateway(s, roles=("http",)) as (rt, url):   # all queued before a worker starts
            for n, customer in enumerate(customers):
                text = "where is my order AB99999" if n == 0 else "hi"
                status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                                      twilio_inbound_params(customer, OUR, text), fake.auth_token)
                assert status == 200
        async with running_gateway(s, roles=("http", "worker")):
            async def menus():
                return sorted(r.value("To") for r in fake.requests
                              if "How can I help" in (r.value("Body") or "")) == sorted(customers[1:])
            await wait_for(menus, timeout=30, message="the batch waited on another conversation's HTTP call")
            assert api.calls == ["AB99999"] and not api.release.is_set()
            api.release.set()

            async def answered():
                return any("AB99999 is shipped" in (r.value("Body") or "") and r.value("To") == customers[0]
                           for r in fake.requests)
            await wait_for(answered, timeout=30, message="the look-up's turn was not answered")
    assert api.calls == ["AB99999"], "the look-up was requested more than once"
    assert await pool.fetchval(DONE) == 11
