"""A chat socket's right ends with its session token: an expired session's open socket is closed
within GATEWAY_RIGHTS_RECHECK_SECONDS (issue 11 item 13)."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from chat_support import chat_gateway, open_tab

from gateway.channels.webchat.tokens import issue_session

pytestmark = pytest.mark.usefixtures("clean")


async def test_an_expired_chat_session_closes_its_socket(chat_settings, http):
    async with chat_gateway(chat_settings.with_(rights_recheck_seconds=1)) as (rt, base):
        lasting = await open_tab(http, base, issue_session(rt.settings.secret_key).token)
        tab = await open_tab(http, base, issue_session(rt.settings.secret_key, ttl=3).token)
        frames = []
        while True:
            msg = await tab.ws.receive(timeout=20)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frames.append(msg.json())
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
        assert frames[-1]["code"] == "expired_token"
        await asyncio.sleep(1.5)    # a re-check later, the valid session's socket is still open
        await lasting.send(type="ping")
        assert (await lasting.next("pong"))["type"] == "pong"
