"""Issue 11 item 4: 300 visitors writing at once through a small Redis pool. Callers wait for a free
connection (GATEWAY_REDIS_MAX_CONNECTIONS, GATEWAY_REDIS_POOL_TIMEOUT) instead of failing, so no
realtime publish is dropped; whatever would be dropped is counted in /metrics."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from chat_support import chat_gateway, new_session, open_tab

from gateway.app.metrics import REALTIME_DROPPED
from gateway.devtools.testing import wait_for

pytestmark = pytest.mark.usefixtures("clean")
VISITORS = 300


def dropped_total() -> float:
    return sum(s.value for metric in REALTIME_DROPPED.collect() for s in metric.samples
               if s.name.endswith("_total"))


async def test_300_visitors_through_a_pool_of_8_drop_nothing(settings, pool, redis_client):
    small = settings.with_(redis_max_connections=8, redis_pool_timeout=30, default_handler="agent")
    before = dropped_total()
    async with chat_gateway(small) as (rt, base), \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:   # 300 sockets at once
        assert rt.redis.connection_pool.max_connections == small.redis_max_connections
        sessions = await asyncio.gather(*(new_session(http, base) for _ in range(VISITORS)))
        tabs = []
        for start in range(0, VISITORS, 50):   # connect in waves (a slow shared machine); all stay open
            tabs += await asyncio.gather(*(open_tab(http, base, s["token"]) for s in sessions[start:start + 50]))
        await asyncio.gather(*(tab.say(f"m-{i}", f"hello {i}") for i, tab in enumerate(tabs)))
        acks = await asyncio.gather(*(tab.next("ack", timeout=120) for tab in tabs))
        assert {a["client_msg_id"] for a in acks} == {f"m-{i}" for i in range(VISITORS)}
        conversations = {a["seq"] and a["message_id"] for a in acks}
        assert len(conversations) == VISITORS

        async def every_thread_announced_on_the_feed():
            entries = await redis_client.xrange(rt.keys.stream_events())
            created = {json.loads(f[b"e"])["conversation_id"] for _, f in entries
                       if json.loads(f[b"e"])["type"] == "message.created"}
            return len(created) >= VISITORS
        await wait_for(every_thread_announced_on_the_feed, timeout=120, interval=0.5,
                       message="not every visitor's message reached the agents' feed")
        async with http.get(base + "/metrics") as resp:
            text = await resp.text()
        await asyncio.gather(*(tab.close() for tab in tabs))
    assert dropped_total() == before, "realtime publishes were dropped"
    assert "# TYPE gateway_realtime_dropped_total counter" in text
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == VISITORS
