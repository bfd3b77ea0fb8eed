"""The agents' realtime feed: fan-out across API processes through Redis, filtering by team,
replay after reconnect, refetch when the stream cannot replay."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from inbox_support import ADMIN_TOKEN, Api, seed_conversation

from gateway.devtools.testing import free_port, settings_env, wait_for


async def next_event(ws, *, types=None, timeout=10.0) -> dict:
    """The next pushed event (skipping hello/pong and types not asked for)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("no event in time")
        try:
            msg = await ws.receive_json(timeout=left)
        except asyncio.TimeoutError:
            raise AssertionError("no event in time") from None
        if msg["type"] in ("hello", "pong") or (types and msg["type"] not in types):
            continue
        return msg


async def connect(http, url, token, **params):
    ws = await http.ws_connect(f"{url}/api/v1/stream", headers={"Authorization": f"Bearer {token}"},
                               params=params)
    hello = await ws.receive_json(timeout=10)
    return ws, hello


@pytest.fixture
async def two_api_processes(settings, pool, inbox_clean, redis_client, spawn, tmp_path):
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        # the periodic rights re-check at its slowest: only an announcement closes a socket quickly
        env = settings_env(settings, GATEWAY_HTTP_PORT=port, GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
                           GATEWAY_RIGHTS_RECHECK_SECONDS=60)
        spawn(["api"], env, log_path=tmp_path / f"api{i}.log")
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    async with aiohttp.ClientSession() as http:
        async def up():
            for u in urls:
                try:
                    async with http.get(u + "/healthz") as r:
                        if r.status != 200:
                            return False
                except aiohttp.ClientError:
                    return False
            return True
        await wait_for(up, timeout=30, interval=0.2)
        yield http, urls


async def test_events_fan_out_across_api_processes_filtered_by_team(two_api_processes, pool):
    http, (url_a, url_b) = two_api_processes
    api_a, api_b = Api(http, url_a, pool), Api(http, url_b, pool)
    red = await api_a.team("red")
    blue = await api_a.team("blue")
    _, red_agent = await api_a.agent("rita", [red])
    _, blue_agent = await api_a.agent("bob", [blue])
    red_conv = (await seed_conversation(pool, "r1", team_id=red))["conversation_id"]
    blue_conv = (await seed_conversation(pool, "b1", team_id=blue))["conversation_id"]

    red_ws, hello = await connect(http, url_a, red_agent)
    assert hello["role"] == "agent"
    blue_ws, _ = await connect(http, url_a, blue_agent)
    admin_ws, _ = await connect(http, url_a, ADMIN_TOKEN)

    # caused on process B, pushed by process A
    note = await api_b.ok("POST", f"/api/v1/conversations/{red_conv}/notes", red_agent, expect=201,
                          json={"text": "checking"})
    got = await next_event(red_ws, types={"message.created"})
    assert got["conversation_id"] == red_conv and got["message_id"] == note["id"] and got["kind"] == "note"
    assert got["id"]
    assert (await next_event(admin_ws, types={"message.created"}))["message_id"] == note["id"]

    await api_b.ok("POST", f"/api/v1/conversations/{blue_conv}/typing", blue_agent, json={"typing": True})
    typing = await next_event(blue_ws, types={"typing", "message.created"})
    assert typing["type"] == "typing" and typing["conversation_id"] == blue_conv, \
        "bob never hears of red's conversation, only of his own"
    await api_b.ok("POST", f"/api/v1/conversations/{red_conv}/claim", red_agent)
    assignment = await next_event(red_ws)
    assert assignment["type"] == "assignment" and assignment["conversation_id"] == red_conv, \
        "rita's next event is her claim: blue's typing never reached her"

    await api_b.ok("POST", "/api/v1/presence", blue_agent, json={"presence": "online"})
    presence = await next_event(red_ws, types={"presence"})
    assert presence["presence"] == "online"
    for ws in (red_ws, blue_ws, admin_ws):
        await ws.close()


async def test_a_revocation_on_one_process_closes_the_stream_on_another(two_api_processes, pool):
    http, (url_a, url_b) = two_api_processes
    api_a = Api(http, url_a, pool)
    _, token = await api_a.agent("ann")
    ws, hello = await connect(http, url_b, token)
    token_id = (await api_a.ok("GET", "/api/v1/me", token))["token_id"]
    assert (await api_a.call("DELETE", f"/api/v1/tokens/{token_id}"))[0] == 204
    while (msg := await ws.receive(timeout=15)).type == aiohttp.WSMsgType.TEXT:
        pass
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401


async def test_reconnect_replays_missed_events_or_asks_to_refetch(gw, redis_client):
    rt, api = gw
    team = await api.team("t")
    _, agent = await api.agent("ann", [team])
    cid = (await seed_conversation(api.pool, "c", team_id=team))["conversation_id"]
    hidden = (await seed_conversation(api.pool, "h", team_id=await api.team("other")))["conversation_id"]

    ws, _ = await connect(api.http, api.url, agent)
    await api.ok("POST", f"/api/v1/conversations/{cid}/notes", agent, expect=201, json={"text": "one"})
    first = await next_event(ws, types={"message.created"})
    await ws.close()

    missed = []
    for text in ("two", "three"):
        missed.append((await api.ok("POST", f"/api/v1/conversations/{cid}/notes", agent, expect=201,
                                    json={"text": text}))["id"])
        await api.ok("POST", f"/api/v1/conversations/{hidden}/notes", expect=201, json={"text": "secret"})

    ws, _ = await connect(api.http, api.url, agent, last_event_id=first["id"])
    replayed = [await next_event(ws, types={"message.created"}) for _ in missed]
    assert [e["message_id"] for e in replayed] == missed, "missed events come back, in order, filtered"
    live = (await api.ok("POST", f"/api/v1/conversations/{cid}/notes", agent, expect=201, json={"text": "four"}))["id"]
    assert (await next_event(ws, types={"message.created"}))["message_id"] == live, "then live, no duplicates"
    await ws.close()

    # the stream was trimmed past the client's position (or Redis restarted empty): refetch
    await redis_client.xtrim(rt.keys.stream_events(), maxlen=1, approximate=False)
    ws, _ = await connect(api.http, api.url, agent, last_event_id=first["id"])
    assert (await ws.receive_json(timeout=5))["type"] == "refetch"
    await ws.close()
    await redis_client.delete(rt.keys.stream_events())
    ws, _ = await connect(api.http, api.url, agent, last_event_id=first["id"])
    assert (await ws.receive_json(timeout=5))["type"] == "refetch"
    await api.ok("POST", f"/api/v1/conversations/{cid}/notes", agent, expect=201, json={"text": "five"})
    assert (await next_event(ws, types={"message.created"}))["conversation_id"] == cid, "live again after a wipe"
    await ws.close()


async def test_stream_authentication(gw):
    rt, api = gw
    async with api.http.get(f"{api.url}/api/v1/stream") as r:
        assert r.status == 401
    integration = await api.token("integration")
    async with api.http.get(f"{api.url}/api/v1/stream", headers={"Authorization": f"Bearer {integration}"}) as r:
        assert r.status == 403
    async with api.http.get(f"{api.url}/api/v1/stream", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 426
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await api.http.ws_connect(f"{api.url}/api/v1/stream", params={"access_token": "gw_bad_token"})
    ws = await api.http.ws_connect(f"{api.url}/api/v1/stream", params={"access_token": ADMIN_TOKEN})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    await ws.close()


async def test_websocket_heartbeat_sets_presence(gw):
    rt, api = gw
    agent_id, agent = await api.agent("ann")
    ws, _ = await connect(api.http, api.url, agent)
    await ws.send_json({"type": "heartbeat", "presence": "online"})
    got = await next_event(ws, types={"presence"})
    assert got == {**got, "agent_id": agent_id, "presence": "online"}
    agents = await api.ok("GET", "/api/v1/agents")
    assert agents[0]["presence"] == "online"
    await ws.close()


async def test_the_feed_is_read_only_while_a_socket_listens(gw):
    """With no agent's socket open the API process reads none of the events stream (a flash sale
    with nobody online costs it nothing); the first socket gets every event after its hello, and
    when the last one closes the reading stops again."""
    from gateway.app.metrics import FEED_EVENTS_READ

    rt, api = gw
    team = await api.team("t")
    _, agent = await api.agent("ann", [team])
    cid = (await seed_conversation(api.pool, "c", team_id=team))["conversation_id"]

    async def notes(n: int) -> list[int]:
        return [(await api.ok("POST", f"/api/v1/conversations/{cid}/notes", agent, expect=201,
                              json={"text": f"note {i}"}))["id"] for i in range(n)]

    before = FEED_EVENTS_READ._value.get()
    await notes(3)
    await asyncio.sleep(1.2)     # longer than the reader's block: it would have read them by now
    assert await rt.redis.xlen(rt.keys.stream_events()) >= 3
    assert FEED_EVENTS_READ._value.get() == before, "the feed was read with no socket open"

    ws, _ = await connect(api.http, api.url, agent)
    live = await notes(2)
    assert [(await next_event(ws, types={"message.created"}))["message_id"] for _ in live] == live
    assert FEED_EVENTS_READ._value.get() > before
    await ws.close()

    async def idle():
        return FEED_EVENTS_READ._value.get()
    await asyncio.sleep(1.2)     # the reader notices the socket is gone at its next read
    stopped = await idle()
    await notes(2)
    await asyncio.sleep(1.2)
    assert await idle() == stopped, "the feed was still read after the last socket closed"

    ws, _ = await connect(api.http, api.url, agent)      # and a new socket is served again
    again = await notes(1)
    assert (await next_event(ws, types={"message.created"}))["message_id"] == again[0]
    await ws.close()
