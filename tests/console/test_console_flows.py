"""What the console's hand-back picker reads: the bot flows and their states."""
from __future__ import annotations

import aiohttp
from console_support import admin

from gateway.testing import running_gateway


async def test_flows_list_the_states_a_hand_back_can_pick(settings, pool, clean, redis_client):
    async with running_gateway(settings.with_(default_handler="flow"), roles=("http",)) as (rt, url), \
            aiohttp.ClientSession() as http:
        found = await admin(http, url, "GET", "/api/v1/flows")
    flows = {f["name"]: f for f in found["flows"]}
    assert found["default"] == "support" and "support" in flows
    support = flows["support"]
    names = [st["name"] for st in support["states"]]
    assert support["start"] in names and len(names) == len(set(names)) > 1


async def test_without_bot_flows_there_is_nothing_to_hand_back_to(settings, pool, clean, redis_client):
    async with running_gateway(settings.with_(default_handler="agent"), roles=("http",)) as (rt, url), \
            aiohttp.ClientSession() as http:
        assert await admin(http, url, "GET", "/api/v1/flows") == {"default": None, "flows": []}
