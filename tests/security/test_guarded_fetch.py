"""The guarded fetcher for URLs from outside (issue 11 item 7): hosts, addresses, schemes, caps, redirects.

Fake "outside" servers listen on loopback addresses. The guard is tested with private addresses
allowed only where a test says so (127.0.0.2 as a stand-in for a public media host): 127.0.0.1 is
refused directly, by name, and behind a redirect, and is never even connected to.
"""
from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.channels.errors import MediaDownloadError
from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import running_gateway, wait_for
from gateway.infra.guarded_fetch import FetchRefused, GuardedFetcher, HostList, address_blocked

ADMIN = {"Authorization": "Bearer admin-test-token"}
CREDENTIALS = {"Authorization": "Basic " + base64.b64encode(b"AC1:secret-token").decode()}


class Outside:
    """A web server on a given loopback address that records every request it gets."""

    def __init__(self, host: str):
        self.host, self.requests = host, []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host=host)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers.get("Authorization")))
        if request.path == "/redirect":
            raise web.HTTPFound(request.query["to"])
        if request.path == "/loop":
            raise web.HTTPFound("/loop")
        if request.path == "/big":
            return web.Response(body=b"x" * 3000)
        if request.path == "/big-chunked":
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(30):
                await resp.write(b"y" * 100)
            return resp
        if request.path == "/slow":
            await asyncio.sleep(5)
        return web.Response(body=b"media-bytes", content_type="image/png")

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def origin(self) -> str:
        return f"{self.host}:{self.server.port}"

    async def __aenter__(self):
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc):
        await self.server.close()


def test_address_classes():
    for ip in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1",
               "fe80::1", "fc00::1", "224.0.0.1", "::ffff:127.0.0.1", "2002:7f00:1::", "100.64.0.1", "not-an-ip"):
        assert address_blocked(ip), ip
    for ip in ("8.8.8.8", "2606:4700:4700::1111", "52.1.2.3"):
        assert not address_blocked(ip), ip
    assert not address_blocked("127.0.0.2", allowed=GuardedFetcher(allow_networks=["127.0.0.2/32"]).allow_networks)


def test_host_lists():
    hosts = HostList.of(["api.twilio.com", "*.twiliocdn.com", "10.0.0.5:8443"], "http://127.0.0.1:4010")
    from yarl import URL
    assert hosts.allows(URL("https://api.twilio.com/2010-04-01/x"))
    assert not hosts.allows(URL("https://api.twilio.com:8443/x"))      # a bare name means the default port
    assert not hosts.allows(URL("https://api.twilio.com.evil.example/x"))
    assert hosts.allows(URL("https://media.twiliocdn.com/x")) and not hosts.allows(URL("https://twiliocdn.com.x/"))
    assert hosts.allows(URL("http://127.0.0.1:4010/media/1")) and not hosts.allows(URL("http://127.0.0.1:4011/"))
    assert hosts.allows(URL("https://10.0.0.5:8443/"))


async def test_loopback_is_refused_directly_by_name_and_behind_a_redirect():
    strict = GuardedFetcher(schemes=("http",))                                    # nothing private allowed
    partly = GuardedFetcher(schemes=("http",), allow_networks=["127.0.0.2/32"])   # only the "public" stand-in
    async with Outside("127.0.0.1") as internal, Outside("127.0.0.2") as media:
        try:
            with pytest.raises(FetchRefused):
                await strict.fetch(internal.url("/secret"), hosts=HostList.of([internal.origin]))
            with pytest.raises(FetchRefused):   # a name resolving to loopback: refused by the resolver
                await strict.fetch(f"http://localhost:{internal.server.port}/secret",
                                   hosts=HostList.of([f"localhost:{internal.server.port}"]))
            with pytest.raises(FetchRefused):
                await partly.fetch(internal.url("/secret"), hosts=HostList.of([internal.origin]))
            ok = await partly.fetch(media.url("/photo"), hosts=HostList.of([media.origin]))
            with pytest.raises(FetchRefused):   # the allowed host redirects to 127.0.0.1
                await partly.fetch(media.url("/redirect?to=" + internal.url("/secret")),
                                   hosts=HostList.of([media.origin, internal.origin]), headers=CREDENTIALS)
            with pytest.raises(FetchRefused):   # ... and to a name for it
                await partly.fetch(media.url(f"/redirect?to=http://localhost:{internal.server.port}/secret"),
                                   hosts=HostList.of([media.origin]))
        finally:
            await strict.close()
            await partly.close()
    assert ok.data == b"media-bytes" and ok.content_type == "image/png"
    assert internal.requests == [], "nothing was ever sent to 127.0.0.1"


async def test_credentials_only_to_the_providers_hosts_and_only_its_urls_are_fetched():
    fetcher = GuardedFetcher(schemes=("http",), allow_networks=["127.0.0.0/8"])
    async with Outside("127.0.0.2") as provider, Outside("127.0.0.3") as cdn:
        hosts = HostList.of([provider.origin])
        try:
            via_cdn = await fetcher.fetch(provider.url("/redirect?to=" + cdn.url("/signed-object")), hosts=hosts,
                                          headers=CREDENTIALS)
            with pytest.raises(FetchRefused):   # a URL off the provider's hosts is not requested at all
                await fetcher.fetch(cdn.url("/anything"), hosts=hosts, headers=CREDENTIALS)
        finally:
            await fetcher.close()
    assert via_cdn.data == b"media-bytes"
    assert provider.requests == [("/redirect", CREDENTIALS["Authorization"])]
    assert cdn.requests == [("/signed-object", None)], "the CDN hop got no credentials"


async def test_schemes_sizes_time_and_redirect_count_are_capped():
    fetcher = GuardedFetcher(schemes=("http",), allow_networks=["127.0.0.0/8"], max_bytes=1000, timeout=1.5,
                             max_redirects=3)
    https_only = GuardedFetcher(allow_networks=["127.0.0.0/8"])
    async with Outside("127.0.0.2") as server:
        hosts = HostList.of([server.origin, "127.0.0.2"])
        try:
            for url in ("file:///etc/passwd", "ftp://127.0.0.2/x", "gopher://127.0.0.2/"):
                with pytest.raises(FetchRefused):
                    await fetcher.fetch(url, hosts=hosts)
            with pytest.raises(FetchRefused):
                await https_only.fetch(server.url("/photo"), hosts=hosts)
            with pytest.raises(FetchRefused):
                await fetcher.fetch(server.url("/redirect?to=file:///etc/passwd"), hosts=hosts)
            for path in ("/big", "/big-chunked"):
                with pytest.raises(FetchRefused, match="larger than 1000"):
                    await fetcher.fetch(server.url(path), hosts=hosts)
            with pytest.raises(FetchRefused, match="redirects"):
                await fetcher.fetch(server.url("/loop"), hosts=hosts)
            started = time.monotonic()
            with pytest.raises(MediaDownloadError):
                await fetcher.fetch(server.url("/slow"), hosts=hosts)
            took = time.monotonic() - started
        finally:
            await fetcher.close()
            await https_only.close()
    assert took < 4.5
    assert not [p for p, _ in server.requests if p == "/x"]


async def get(url, headers=None):
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers or {}) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_agent_and_inbound_urls_elsewhere_are_never_fetched_with_twilio_credentials(
        settings, pool, clean, redis_client):
    async with FakeTwilio() as fake, Outside("127.0.0.1") as attacker:
        s = settings.with_(twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                           twilio_from_number="+15550001111", twilio_api_base=fake.base_url)
        async with running_gateway(s) as (rt, url):
            params = twilio_inbound_params("+14155550100", "+15550001111", "see this",
                                           media_urls=[attacker.url("/inbound-media")])
            assert (await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params, fake.auth_token))[0] == 200
            conv, inbound_id = await pool.fetchrow("SELECT conversation_id, id FROM messages")
            inbound = await get(f"{url}/api/v1/conversations/{conv}/messages/{inbound_id}/attachments/0", ADMIN)
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/api/v1/conversations/{conv}/messages", headers=ADMIN, json={
                        "text": "f", "channel": "sms", "attachments": [{"url": attacker.url("/anything")}]}) as resp:
                    assert resp.status == 201, await resp.text()
                    reply_id = (await resp.json())["message"]["id"]

            async def sent():
                return [r for r in fake.requests if r.path.endswith("/Messages.json")]
            sends = await wait_for(sent, timeout=30)
            outbound = await get(f"{url}/api/v1/conversations/{conv}/messages/{reply_id}/attachments/0", ADMIN)
            link = attacker.url("/anything")
    assert inbound[0] == 404 and inbound[1]["error"]["code"] == "not_fetchable"
    assert outbound[0] == 404 and outbound[1]["error"]["code"] == "not_stored"
    assert sends[0].values("MediaUrl") == [link], "the agent's URL went to Twilio as a link"
    assert attacker.requests == [], "the gateway never requested the outside URLs"
    assert await pool.fetchval("SELECT count(*) FROM blobs") == 0
