import pytest

from gateway.fakes.graph import FakeGraph


@pytest.fixture
async def fake_graph():
    async with FakeGraph() as fake:
        yield fake
