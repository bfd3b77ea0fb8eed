"""Helpers for the email channel tests: fixture bytes and a real aiohttp server reading forms."""
from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.channels.email.webhooks import read_form

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_bytes():
    def load(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()
    return load


@pytest.fixture
async def post_form():
    """POST a captured webhook body to a real aiohttp server; returns what read_form produced."""
    received = []

    async def handler(request: web.Request) -> web.Response:
        received.append(await read_form(request))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/inbound", handler)
    client = TestClient(TestServer(app))
    await client.start_server()

    async def post(body: bytes, content_type: str):
        response = await client.post("/inbound", data=body, headers={"Content-Type": content_type})
        assert response.status == 200
        return received.pop()

    yield post
    await client.close()
