"""Console sessions' open feeds end with the session's rights (issue 11 item 13): a demoted admin's
feed, which holds the role it connected with, and a signed-out session's feed close at once."""
from __future__ import annotations

import aiohttp
import pytest
from console_support import PASSWORD, Browser, admin

from gateway.devtools.testing import running_gateway

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


async def test_signing_out_closes_that_sessions_feed_at_once(settings, redis_client):
    async with running_gateway(settings.with_(rights_recheck_seconds=60), roles=("http",)) as (rt, url), \
            aiohttp.ClientSession() as http:
        await admin(http, url, "POST", "/api/v1/agents", {"email": "ann@example.com", "password": PASSWORD})
        laptop, phone = Browser(url), Browser(url)
        try:
            for b in (laptop, phone):
                assert (await b.sign_in("ann@example.com"))[0] == 200
            feeds = []
            for b in (laptop, phone):
                ws = await b.http.ws_connect(url.replace("http", "ws", 1) + "/api/v1/stream", headers={"Origin": url})
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
                feeds.append(ws)
            assert (await laptop.call("DELETE", "/api/v1/session"))[0] == 204
            while (msg := await feeds[0].receive(timeout=15)).type == aiohttp.WSMsgType.TEXT:
                pass
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
            await feeds[1].send_json({"type": "ping"})                  # the other session keeps its feed
            assert (await feeds[1].receive_json(timeout=10))["type"] == "pong"
            await feeds[1].close()
        finally:
            await laptop.close()
            await phone.close()
