import aiohttp
import pytest

from gateway.fakes.graph import FakeGraph


@pytest.fixture
async def fake_graph():
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session
