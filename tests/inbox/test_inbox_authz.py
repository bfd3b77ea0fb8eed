"""Who may call what: every role against every endpoint, and agents fenced into their teams."""
from __future__ import annotations

import pytest
from inbox_support import ADMIN_TOKEN, seed_conversation

ALL = ("admin", "agent", "readonly", "integration")
READ = ("admin", "agent", "readonly")
ACT = ("admin", "agent")
ADMIN = ("admin",)
REPORT = ("admin", "readonly")

# (method, path template, body, roles allowed). {c} conversation, {p} contact, {a} agent, {k} canned,
# {x} a throwaway API token.
MATRIX = [
    ("GET", "/api/v1/me", None, ALL),
    ("GET", "/api/v1/conversations", None, READ),
    ("GET", "/api/v1/conversations/{c}", None, READ),
    ("GET", "/api/v1/conversations/{c}/messages", None, READ),
    ("GET", "/api/v1/conversations/{c}/channels", None, READ),
    ("POST", "/api/v1/conversations/{c}/messages", {"text": "hi"}, ACT),
    ("POST", "/api/v1/conversations/{c}/notes", {"text": "note"}, ACT),
    ("POST", "/api/v1/conversations/{c}/assign", {"agent_id": "{a}"}, ACT),
    ("POST", "/api/v1/conversations/{c}/unassign", None, ACT),
    ("POST", "/api/v1/conversations/{c}/claim", None, ACT),
    ("POST", "/api/v1/conversations/{c}/labels", {"add": ["x"]}, ACT),
    ("POST", "/api/v1/conversations/{c}/typing", {"typing": True}, ACT),
    ("POST", "/api/v1/conversations/{c}/snooze", {"until": "2100-01-01T00:00:00Z"}, ACT),
    ("POST", "/api/v1/conversations/{c}/resolve", {}, ACT),
    ("POST", "/api/v1/conversations/{c}/reopen", None, ACT),
    ("POST", "/api/v1/conversations/{c}/handback", {"flow_state": "start"}, ACT),
    ("POST", "/api/v1/conversations/{c}/team", {"team_id": "{t}"}, ACT),
    ("GET", "/api/v1/contacts/{p}", None, READ),
    ("GET", "/api/v1/contacts/{p}/consent", None, READ),
    ("POST", "/api/v1/contacts/{p}/consent", {"channel": "sms", "purpose": "marketing", "granted": False,
                                              "source": "t"}, ACT),
    ("POST", "/api/v1/consent/import", {"records": [{"kind": "phone", "address": "+14155550100", "channel": "sms",
                                                     "purpose": "marketing", "granted": False, "source": "t"}]}, ADMIN),
    ("GET", "/api/v1/contacts", None, READ),
    ("POST", "/api/v1/contacts/{p}/preferences-link", None, ACT),
    ("POST", "/api/v1/contacts", {"name": "n", "identities": [{"kind": "external_id", "address": "new-{n}"}]}, ACT),
    ("POST", "/api/v1/contacts/{p}/identities", {"kind": "external_id", "address": "more-{n}"}, ACT),
    ("DELETE", "/api/v1/contacts/{p}/identities", {"kind": "external_id", "address": "cust-{n}"}, ACT),
    ("GET", "/api/v1/contacts/{p}/journeys", None, READ),
    ("PATCH", "/api/v1/contacts/{p}", {"attributes": {"a": "b"}}, ACT),
    ("POST", "/api/v1/contacts/{p}/merge", {"contact_id": "{p2}"}, ACT),
    ("GET", "/api/v1/contacts/{p}/export", None, ADMIN),
    ("POST", "/api/v1/contacts/{p3}/erase", None, ADMIN),
    ("GET", "/api/v1/search?q=hello", None, READ),
    ("GET", "/api/v1/flows", None, READ),
    ("POST", "/api/v1/uploads", {"a": "file"}, ACT),
    ("GET", "/api/v1/agents", None, READ),
    ("POST", "/api/v1/agents", {"name": "zed"}, ADMIN),
    ("PATCH", "/api/v1/agents/{a}", {"capacity": 3}, ADMIN),
    ("POST", "/api/v1/agents/{a}/tokens", {}, ADMIN),
    ("GET", "/api/v1/tokens", None, ADMIN),
    ("POST", "/api/v1/tokens", {"name": "t-{n}", "role": "readonly"}, ADMIN),
    ("POST", "/api/v1/agents/{a}/invite", None, ADMIN),
    ("DELETE", "/api/v1/tokens/{x}", None, ADMIN),
    ("GET", "/api/v1/teams", None, READ),
    ("POST", "/api/v1/teams", {"name": "team-{n}"}, ADMIN),
    ("GET", "/api/v1/canned-responses", None, READ),
    ("POST", "/api/v1/canned-responses", {"short_code": "c-{n}", "body": "hi"}, ADMIN),
    ("DELETE", "/api/v1/canned-responses/{k}", None, ADMIN),
    ("POST", "/api/v1/presence", {"presence": "away"}, ACT),
    ("POST", "/api/v1/assignments/run", None, ADMIN),
    ("GET", "/api/v1/routing", None, READ),
    ("POST", "/api/v1/flows/deploy", None, ADMIN),
    ("GET", "/api/v1/metrics/summary", None, REPORT),
    ("GET", "/api/v1/audit", None, REPORT),
    ("GET", "/api/v1/stream", None, READ),
    ("GET", "/api/v1/inboxes", None, READ),
    ("GET", "/api/v1/inboxes/{i}", None, READ),
    ("POST", "/api/v1/inboxes", {"name": "in-{n}", "channel": "api", "address": "site-{n}"}, ADMIN),
    ("PATCH", "/api/v1/inboxes/{i}", {"signature": "-- the API desk"}, ADMIN),
    ("DELETE", "/api/v1/inboxes/{i}", None, ADMIN),
    ("POST", "/api/v1/inbound", {"client_message_id": "m-{n}", "contact": {"external_id": "x"}, "text": "hi"},
     ("admin", "integration")),
]


def _fill(value, ids: dict):
    """Placeholders: a whole "{x}" becomes the id itself, "{x}" inside a string is substituted."""
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
            return ids[value[1:-1]]
        for k, v in ids.items():
            value = value.replace("{" + k + "}", str(v))
    return value


@pytest.fixture
async def world(gw):
    rt, api = gw
    team = await api.team("alpha")
    other = await api.team("beta")
    agent_id, agent = await api.agent("ann", [team])
    tokens = {"admin": ADMIN_TOKEN, "agent": agent, "readonly": await api.token("readonly"),
              "integration": await api.token("integration")}
    return rt, api, team, other, agent_id, tokens


async def test_every_endpoint_is_in_the_matrix(gw):
    """Every inbox route (and the inbound API) has its row; other areas' routes join as they come."""
    rt, api = gw
    from gateway.http.app import create_app
    documented = {(r.method, r.resource.canonical) for r in create_app(rt).router.routes()
                  if r.handler.__module__.startswith(("gateway.http.inbox", "gateway.http.stream"))
                  and r.method != "HEAD"} | {("POST", "/api/v1/inbound")}
    in_matrix = {(m, p.split("?")[0].replace("{c}", "{id}").replace("{p}", "{id}").replace("{p3}", "{id}")
                  .replace("{a}", "{id}").replace("{k}", "{id}").replace("{x}", "{id}").replace("{i}", "{id}")) for m, p, _, _ in MATRIX}
    assert documented - in_matrix == set(), "add new endpoints to the authorization matrix"


@pytest.mark.parametrize("role", ["none", "wrong", "admin", "agent", "readonly", "integration"])
async def test_authorization_matrix(world, role):
    rt, api, team, other, agent_id, tokens = world
    token = {"none": None, "wrong": "gw_deadbeef_nope"}.get(role, tokens.get(role))
    n = 0
    for method, path, body, allowed in MATRIX:
        n += 1
        conv = await seed_conversation(api.pool, f"cust-{role}-{n}", team_id=team)
        conv2 = await seed_conversation(api.pool, f"cust-{role}-{n}-b", team_id=team)
        conv3 = await seed_conversation(api.pool, f"cust-{role}-{n}-c", team_id=team)
        canned = await api.ok("POST", "/api/v1/canned-responses", expect=201,
                              json={"short_code": f"k-{role}-{n}", "body": "x"})
        spare = (await api.ok("POST", "/api/v1/tokens", json={"name": f"spare {n}", "role": "readonly"}))["id"]
        inbox = await api.ok("POST", "/api/v1/inboxes", expect=201,
                             json={"name": f"ib-{role}-{n}", "channel": "api", "address": f"ib-{role}-{n}"})
        ids = {"i": inbox["id"], "x": spare, "c": conv["conversation_id"], "p": conv["contact_id"], "p2": conv2["contact_id"],
               "p3": conv3["contact_id"], "a": agent_id, "k": canned["id"], "t": team, "n": f"{role}-{n}"}
        url = path
        for k, v in ids.items():
            url = url.replace("{" + k + "}", str(v))
        payload = _fill(body, ids)
        status, data = await api.call(method, url, token, json=payload)
        if role in ("none", "wrong"):
            expected = {401}
        elif role in allowed:
            expected = None
        else:
            expected = {403}
        if expected is None:
            assert status not in (401, 403, 404, 500), (role, method, path, status, data)
        else:
            assert status in expected, (role, method, path, status, data)
        if status in (401, 403):
            assert data["error"]["code"] in ("unauthorized", "forbidden")


async def test_agents_only_see_their_teams_and_the_unrouted_queue(world):
    rt, api, team, other, agent_id, tokens = world
    agent = tokens["agent"]
    mine = await seed_conversation(api.pool, "mine", team_id=team, text="refund please")
    theirs = await seed_conversation(api.pool, "theirs", team_id=other, text="refund now")
    unrouted = await seed_conversation(api.pool, "unrouted", text="refund maybe")

    listed = await api.ok("GET", "/api/v1/conversations", agent)
    assert {c["id"] for c in listed["conversations"]} == {mine["conversation_id"], unrouted["conversation_id"]}
    assert (await api.ok("GET", "/api/v1/conversations", agent, params={"team_id": str(other)}))["conversations"] == []
    everything = await api.ok("GET", "/api/v1/conversations", tokens["readonly"])
    assert len(everything["conversations"]) == 3

    cid, pid = theirs["conversation_id"], theirs["contact_id"]
    for method, path, body in [
        ("GET", f"/api/v1/conversations/{cid}", None), ("GET", f"/api/v1/conversations/{cid}/messages", None),
        ("GET", f"/api/v1/conversations/{cid}/channels", None),
        ("POST", f"/api/v1/conversations/{cid}/messages", {"text": "x"}),
        ("POST", f"/api/v1/conversations/{cid}/notes", {"text": "x"}),
        ("POST", f"/api/v1/conversations/{cid}/claim", None),
        ("POST", f"/api/v1/conversations/{cid}/assign", {"agent_id": agent_id}),
        ("POST", f"/api/v1/conversations/{cid}/unassign", None),
        ("POST", f"/api/v1/conversations/{cid}/labels", {"add": ["x"]}),
        ("POST", f"/api/v1/conversations/{cid}/typing", {}),
        ("POST", f"/api/v1/conversations/{cid}/snooze", {"until": "2100-01-01T00:00:00+02:00"}),
        ("POST", f"/api/v1/conversations/{cid}/resolve", {}),
        ("POST", f"/api/v1/conversations/{cid}/reopen", None),
        ("POST", f"/api/v1/conversations/{cid}/handback", {"flow_state": "s"}),
        ("POST", f"/api/v1/conversations/{cid}/team", {"team_id": team}),
        ("GET", f"/api/v1/contacts/{pid}", None), ("PATCH", f"/api/v1/contacts/{pid}", {"name": "x"}),
        ("POST", f"/api/v1/contacts/{mine['contact_id']}/merge", {"contact_id": pid}),
        ("POST", f"/api/v1/contacts/{pid}/merge", {"contact_id": mine["contact_id"]}),
    ]:
        status, data = await api.call(method, path, agent, json=body)
        assert status == 404, (method, path, status, data)
        missing, _ = await api.call(method, path.replace(f"/{cid}", "/999999").replace(f"/{pid}", "/999998"),
                                    agent, json=body)
        assert missing == 404, "a hidden conversation answers exactly like a missing one"
    untouched = await api.pool.fetchrow("SELECT * FROM conversations WHERE id = $1", cid)
    assert untouched["assignee_id"] is None and untouched["status"] == "open" and untouched["labels"] == []
    assert await api.pool.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", cid) == 1

    found = await api.ok("GET", "/api/v1/search", agent, params={"q": "refund"})
    assert {m["conversation_id"] for m in found["messages"]} == {mine["conversation_id"], unrouted["conversation_id"]}
    assert "theirs" not in {c["external_id"] for c in found["contacts"]}
    found = await api.ok("GET", "/api/v1/search", agent, params={"q": "theirs"})
    assert found["contacts"] == []

    # assigned to me across teams: visible; moved out of my teams: gone
    await api.ok("POST", f"/api/v1/conversations/{cid}/assign", json={"agent_id": agent_id})
    assert (await api.ok("GET", f"/api/v1/conversations/{cid}", agent))["assignee_id"] == agent_id
    mine_id = mine["conversation_id"]
    await api.ok("POST", f"/api/v1/conversations/{mine_id}/team", agent, json={"team_id": other})
    status, _ = await api.call("GET", f"/api/v1/conversations/{mine_id}", agent)
    assert status == 404
