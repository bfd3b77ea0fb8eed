"""Adding a channel is adding one folder and one line in the registry.

`pigeon/` (next to this file) is a made-up SMS provider written the way gateway/channels/<name>/
packages are: its webhook route, its sender and the settings it reads. Registered with one line
(`Runtime.channels`, the registry's extension point: CHANNELS plus "pigeon"), it works end to end
through the real app: a signed webhook is stored and answered by the bot, and the answer leaves through
its sender; gateway/http and gateway/app know nothing of it (tests/structure/test_channel_registry.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from gateway.app.plugins import PluginError
from gateway.channels.registry import CHANNELS
from gateway.devtools.testing import LocalServer, running_gateway, wait_for
from gateway.domain.types import Channel

CUSTOMER = "+14155550177"
KEY = "pigeon-key"


class PigeonLoft(LocalServer):
    """The provider's end: takes the messages our pigeon sender posts."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/send", self.send)

    async def send(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response({"id": f"pg-{len(self.received)}"})


@pytest.fixture
def pigeon_env(monkeypatch):
    monkeypatch.setenv("PIGEON_KEY", KEY)


async def test_a_registered_channel_package_takes_messages_in_and_sends_replies(
        settings, pool, clean, redis_client, http, pigeon_env, monkeypatch):
    async with PigeonLoft() as loft:
        monkeypatch.setenv("PIGEON_OUTBOUND_URL", f"{loft.base_url}/send")
        async with running_gateway(settings.with_(default_handler="echo"), channels=(*CHANNELS, "pigeon")) as (rt, url):
            assert type(rt.senders[Channel.SMS]).__name__ == "PigeonSender"
            async with http.post(f"{url}/webhooks/pigeon", headers={"X-Pigeon-Key": "wrong"},
                                 json={"id": "p-0", "from": CUSTOMER, "text": "forged"}) as resp:
                assert resp.status == 403
            async with http.post(f"{url}/webhooks/pigeon", headers={"X-Pigeon-Key": KEY},
                                 json={"id": "p-1", "from": CUSTOMER, "text": "coo"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["duplicate"] is False

            async def delivered():
                return loft.received
            sent = await wait_for(delivered, timeout=15, message="the bot's reply never left through pigeon post")
            assert sent == [{"to": CUSTOMER, "text": "You said: coo"}]

            async def recorded():
                return await pool.fetchrow("""SELECT provider_message_id, channel FROM messages
                                              WHERE direction = 'out' AND provider_message_id IS NOT NULL""")
            row = await wait_for(recorded, timeout=10)
            assert dict(row) == {"provider_message_id": "pg-1", "channel": "sms"}
            stored = await pool.fetchrow("SELECT provider, body FROM messages WHERE direction = 'in'")
            assert dict(stored) == {"provider": "pigeon", "body": "coo"}


async def test_the_registry_line_is_what_mounts_it(settings, clean, redis_client, http, pigeon_env):
    """Without its line the folder does nothing: the route does not exist, SMS keeps its sender."""
    async with running_gateway(settings) as (rt, url):
        async with http.post(f"{url}/webhooks/pigeon", headers={"X-Pigeon-Key": KEY},
                             json={"id": "p-2", "from": CUSTOMER, "text": "coo"}) as resp:
            assert resp.status == 404
        assert type(rt.senders[Channel.SMS]).__name__ != "PigeonSender"


async def test_a_registered_package_that_does_not_exist_stops_the_start(settings, clean, redis_client):
    with pytest.raises(PluginError, match="no_such_channel"):
        async with running_gateway(settings, channels=(*CHANNELS, "no_such_channel")):
            pass


def test_the_pigeon_folder_is_all_there_is():
    """Nothing else in the repository names it: the folder and the test's one line are the whole channel."""
    here = Path(__file__).resolve().parent
    repo = here.parents[1]
    named = [p for p in (repo / "gateway").rglob("*.py") if "pigeon" in p.read_text(encoding="utf-8")]
    assert named == []
    assert sorted(p.name for p in (here / "pigeon").glob("*.py")) == ["__init__.py", "routes.py", "secrets.py",
                                                                       "sender.py"]
