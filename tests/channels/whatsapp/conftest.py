import pytest

from gateway.devtools.fakes.graph import FakeGraph


@pytest.fixture
async def fake_graph():
    async with FakeGraph() as fake:
        yield fake
