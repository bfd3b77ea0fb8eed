"""A demoted admin keeps neither admin calls nor the admin feed it had open: the socket, which holds
the role it connected with, is closed at once (issue 11 item 13: rights that end, end everywhere)."""
from __future__ import annotations

import aiohttp
import pytest
from console_support import PASSWORD, Browser, admin

from gateway.testing import running_gateway

pytestmark = pytest.mark.usefixtures("clean")


async def test_demoting_an_admin_ends_its_session_and_closes_its_feed(settings, redis_client):
    async with running_gateway(settings.with_(rights_recheck_seconds=60), roles=("http",)) as (rt, url), \
            aiohttp.ClientSession() as http:
        boss = await admin(http, url, "POST", "/api/v1/agents",
                           {"email": "boss@example.com", "password": PASSWORD, "role": "admin"})
        b = Browser(url)
        try:
            assert (await b.sign_in("boss@example.com"))[0] == 200
            assert (await b.call("GET", "/api/v1/tokens"))[0] == 200
            ws = await b.http.ws_connect(url.replace("http", "ws", 1) + "/api/v1/stream", headers={"Origin": url})
            assert (await ws.receive_json(timeout=10))["type"] == "hello"

            await admin(http, url, "PATCH", f"/api/v1/agents/{boss['id']}", {"role": "agent"})
            while (msg := await ws.receive(timeout=15)).type == aiohttp.WSMsgType.TEXT:
                pass
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
            assert (await b.call("GET", "/api/v1/tokens"))[0] == 403     # each call reads the role afresh
            status, me, _ = await b.call("GET", "/api/v1/me")
            assert status == 200 and me["role"] == "agent"
            ws = await b.http.ws_connect(url.replace("http", "ws", 1) + "/api/v1/stream", headers={"Origin": url})
            assert (await ws.receive_json(timeout=10))["role"] == "agent"   # reconnected with the new role
            await ws.close()
        finally:
            await b.close()
