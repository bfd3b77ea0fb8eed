"""Fixtures of the inbox tests: a running gateway and an API client."""
from __future__ import annotations

import aiohttp
import pytest
from inbox_support import INBOX_TABLES, Api

from gateway.devtools.testing import running_gateway


@pytest.fixture
async def inbox_clean(pool, clean):
    await pool.execute(f"TRUNCATE {INBOX_TABLES} RESTART IDENTITY CASCADE")
    yield


@pytest.fixture
async def gw(settings, pool, inbox_clean, redis_client):
    """(runtime, Api) with every role of the gateway in this process."""
    async with running_gateway(settings) as (rt, url):
        async with aiohttp.ClientSession() as http:
            yield rt, Api(http, url, pool)
