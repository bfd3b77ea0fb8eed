import aiohttp
import pytest

from gateway.fakes.twilio import FakeTwilio


@pytest.fixture
async def fake_twilio():
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session
