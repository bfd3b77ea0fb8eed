"""Rights that must end: deactivation ends an agent's tokens, tokens are listed and revoked through
the API, and a contact's events follow the contact's visibility rule."""
from __future__ import annotations

from inbox_support import seed_conversation


async def test_deactivating_an_agent_ends_its_tokens(gw):
    rt, api = gw
    team = await api.team("alpha")
    agent_id, token = await api.agent("ann", [team])
    _, second = await api.agent("ann2", [team])
    conv = await seed_conversation(api.pool, "cust-1", team_id=team)
    cid = conv["conversation_id"]
    extra = (await api.ok("POST", f"/api/v1/agents/{agent_id}/tokens", json={"name": "laptop"}))["token"]
    assert (await api.ok("GET", "/api/v1/me", token))["agent_id"] == agent_id

    await api.ok("PATCH", f"/api/v1/agents/{agent_id}", json={"active": False})
    for tok in (token, extra):
        for method, path, body in (("GET", "/api/v1/me", None),
                                   ("GET", f"/api/v1/conversations/{cid}/messages", None),
                                   ("POST", f"/api/v1/conversations/{cid}/claim", None),
                                   ("POST", f"/api/v1/conversations/{cid}/messages", {"text": "still here"})):
            status, data = await api.call(method, path, tok, json=body)
            assert status == 401, (method, path, status, data)
    assert await api.pool.fetchval("SELECT count(*) FROM api_tokens WHERE agent_id = $1 AND revoked_at IS NULL",
                                   agent_id) == 0
    assert (await api.ok("GET", "/api/v1/me", second))["role"] == "agent"   # other agents unaffected
    status, data = await api.call("POST", f"/api/v1/agents/{agent_id}/tokens", json={})
    assert status == 422 and data["error"]["code"] == "agent_deactivated"
    # reactivation does not revive the old tokens
    await api.ok("PATCH", f"/api/v1/agents/{agent_id}", json={"active": True})
    assert (await api.call("GET", "/api/v1/me", token))[0] == 401
    fresh = (await api.ok("POST", f"/api/v1/agents/{agent_id}/tokens", json={}))["token"]
    assert (await api.ok("GET", "/api/v1/me", fresh))["agent_id"] == agent_id


async def test_an_inactive_agent_is_refused_even_with_an_unrevoked_token(gw):
    """The rule is the agent's state, not only its tokens (sessions go through the same check)."""
    rt, api = gw
    agent_id, token = await api.agent("bob")
    await api.pool.execute("UPDATE agents SET deactivated_at = now() WHERE id = $1", agent_id)
    assert (await api.call("GET", "/api/v1/me", token))[0] == 401
    async with api.http.get(f"{api.url}/api/v1/stream", params={"access_token": token}) as resp:
        assert resp.status == 401


async def test_tokens_are_listed_created_once_and_revoked_through_the_api(gw):
    rt, api = gw
    agent_id, _ = await api.agent("cat")
    created = await api.ok("POST", "/api/v1/tokens", expect=201,
                           json={"name": "crm", "role": "integration", "scopes": ["events:read"]})
    assert created["token"].startswith(f"gw_{created['prefix']}_") and created["scopes"] == ["events:read"]
    listed = await api.ok("GET", "/api/v1/tokens")
    row = next(t for t in listed if t["id"] == created["id"])
    assert row["revoked_at"] is None and row["role"] == "integration" and row["scopes"] == ["events:read"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    secret = created["token"][len(f"gw_{created['prefix']}_"):]   # token_urlsafe: may itself hold "_"
    assert created["token"] not in str(listed) and secret not in str(listed)
    mine = await api.ok("GET", "/api/v1/tokens", params={"agent_id": str(agent_id)})
    assert [t["agent_id"] for t in mine] == [agent_id]

    assert (await api.call("GET", "/api/v1/me", created["token"]))[0] == 200
    assert (await api.call("DELETE", f"/api/v1/tokens/{created['id']}"))[0] == 204
    assert (await api.call("GET", "/api/v1/me", created["token"]))[0] == 401
    assert (await api.call("DELETE", f"/api/v1/tokens/{created['id']}"))[0] == 404
    active = await api.ok("GET", "/api/v1/tokens", params={"active": "true"})
    assert created["id"] not in [t["id"] for t in active]

    for bad in ({"name": "x", "role": "root"}, {"name": "x", "role": "agent"},
                {"name": "x", "role": "integration", "scopes": ["everything"]}, {"role": "readonly"}):
        status, data = await api.call("POST", "/api/v1/tokens", json=bad)
        assert status == 400, (bad, status, data)
    status, _ = await api.call("POST", "/api/v1/tokens", json={"name": "x", "role": "agent", "agent_id": 999999})
    assert status == 422


async def test_events_follow_the_contacts_visibility_rule(gw):
    rt, api = gw
    team_a, team_b = await api.team("a"), await api.team("b")
    _, agent_a = await api.agent("ann", [team_a])
    _, agent_b = await api.agent("ben", [team_b])
    theirs = await seed_conversation(api.pool, "cust-b", team_id=team_b)
    poster = await api.token("integration")
    reader = (await api.ok("POST", "/api/v1/tokens", json={"name": "bi", "role": "integration",
                                                           "scopes": ["events:read"]}))["token"]
    await api.ok("POST", "/api/v1/events", poster, json={
        "event_id": "e1", "name": "order_paid", "contact": {"contact_id": theirs["contact_id"]},
        "properties": {"card_last4": "4242"}})
    params = {"contact_id": str(theirs["contact_id"])}
    lonely = await api.ok("POST", "/api/v1/events", poster, json={
        "event_id": "e2", "name": "signed_up", "contact": {"external_id": "no-conversation-yet"}})

    # the same answer as GET /contacts/{id}: 404 for what the agent may not see
    assert (await api.call("GET", f"/api/v1/contacts/{theirs['contact_id']}", agent_a))[0] == 404
    status, data = await api.call("GET", "/api/v1/events", agent_a, params=params)
    assert status == 404 and "4242" not in str(data)
    status, data = await api.call("GET", "/api/v1/events", agent_b, params=params)
    assert status == 200 and [e["event_id"] for e in data["events"]] == ["e1"]
    # a contact whose thread is in the shared (unrouted) queue: every agent, as for its conversation
    assert (await api.call("GET", "/api/v1/events", agent_a, params={"contact_id": str(lonely["contact_id"])}))[0] \
        == (await api.call("GET", f"/api/v1/contacts/{lonely['contact_id']}", agent_a))[0] == 200
    # integration tokens post but do not read back, unless given the read scope
    status, data = await api.call("GET", "/api/v1/events", poster, params=params)
    assert status == 403 and "4242" not in str(data)
    for tok in (reader, await api.token("readonly")):
        status, data = await api.call("GET", "/api/v1/events", tok, params=params)
        assert status == 200 and data["events"][0]["properties"] == {"card_last4": "4242"}
    # a scoped integration token is still not an inbox reader
    assert (await api.call("GET", f"/api/v1/conversations/{theirs['conversation_id']}", reader))[0] == 403


# -- open sockets: re-checked at once on an announcement, and at least every RIGHTS_RECHECK_SECONDS --

async def _gateway(settings, pool, **changes):
    import contextlib

    import aiohttp
    from inbox_support import Api

    from gateway.devtools.testing import running_gateway

    stack = contextlib.AsyncExitStack()
    rt, url = await stack.enter_async_context(running_gateway(settings.with_(**changes)))
    http = await stack.enter_async_context(aiohttp.ClientSession())
    return stack, rt, Api(http, url, pool)


async def _stream(api, token):
    ws = await api.http.ws_connect(f"{api.url}/api/v1/stream", headers={"Authorization": f"Bearer {token}"})
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    return ws


async def _until_closed(ws, timeout: float) -> tuple[list[dict], int]:
    """Frames until the server closes the socket, and the code of its close frame (AssertionError if
    it stays open `timeout` s)."""
    import asyncio

    import aiohttp

    frames = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"socket still open; got {frames}"
        try:
            msg = await ws.receive(timeout=left)
        except asyncio.TimeoutError:
            raise AssertionError(f"socket still open; got {frames}") from None
        if msg.type == aiohttp.WSMsgType.TEXT:
            frames.append(msg.json())
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            return frames, msg.data
        elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return frames, ws.close_code


async def test_revocation_and_deactivation_close_open_streams_at_once(settings, pool, inbox_clean, redis_client):
    # the periodic re-check is at its slowest: only the announcement can close within the timeout
    stack, rt, api = await _gateway(settings, pool, rights_recheck_seconds=60)
    async with stack:
        agent_id, token = await api.agent("ann")
        ws = await _stream(api, token)
        token_id = (await api.ok("GET", "/api/v1/me", token))["token_id"]
        assert (await api.call("DELETE", f"/api/v1/tokens/{token_id}"))[0] == 204
        frames, code = await _until_closed(ws, timeout=15)
        assert code == 4401 and frames[-1]["type"] == "revoked"

        other_id, other = await api.agent("ben")
        ws1, ws2 = await _stream(api, other), await _stream(api, other)
        _, third = await api.agent("cy")
        bystander = await _stream(api, third)
        await api.ok("PATCH", f"/api/v1/agents/{other_id}", json={"active": False})
        for ws in (ws1, ws2):
            frames, code = await _until_closed(ws, timeout=15)
            assert code == 4401 and frames[-1]["type"] == "revoked"
        await bystander.send_json({"type": "ping"})
        assert (await bystander.receive_json(timeout=10))["type"] == "pong"   # others keep their socket
        await bystander.close()


async def test_a_right_ended_without_announcement_closes_within_the_recheck_period(settings, pool, inbox_clean,
                                                                                    redis_client):
    stack, rt, api = await _gateway(settings, pool, rights_recheck_seconds=1)
    async with stack:
        agent_id, token = await api.agent("ann")
        ws = await _stream(api, token)
        # another tool ended the right behind the API's back (no pub/sub announcement)
        await api.pool.execute("UPDATE agents SET deactivated_at = now() WHERE id = $1", agent_id)
        frames, code = await _until_closed(ws, timeout=15)
        assert code == 4401


async def test_a_team_change_rescopes_the_open_stream(settings, pool, inbox_clean, redis_client):
    stack, rt, api = await _gateway(settings, pool, rights_recheck_seconds=60)
    async with stack:
        team_a, team_b = await api.team("a"), await api.team("b")
        agent_id, token = await api.agent("ann", [team_a])
        conv_a = (await seed_conversation(api.pool, "cust-a", team_id=team_a))["conversation_id"]
        conv_b = (await seed_conversation(api.pool, "cust-b", team_id=team_b))["conversation_id"]
        ws = await _stream(api, token)

        async def notes_seen(expect_cid):
            """Post a note in both conversations; the conversation ids the socket is told about."""
            for cid in (conv_a, conv_b):
                await api.ok("POST", f"/api/v1/conversations/{cid}/notes", json={"text": "n"})
            seen, frames = set(), []
            while expect_cid not in seen:
                frame = await ws.receive_json(timeout=10)
                frames.append(frame)
                if frame.get("type") == "message.created":
                    seen.add(frame["conversation_id"])
            return seen, frames

        seen, _ = await notes_seen(conv_a)
        assert conv_b not in seen
        await api.ok("PATCH", f"/api/v1/agents/{agent_id}", json={"team_ids": [team_b]})
        while (await ws.receive_json(timeout=10))["type"] != "refetch":
            pass
        seen, _ = await notes_seen(conv_b)
        assert conv_a not in seen
        await ws.close()
