"""Claims under races, manual assignment, and auto-assignment by presence, round robin and capacity."""
from __future__ import annotations

import asyncio

from inbox_support import seed_conversation


async def test_concurrent_claims_exactly_one_wins(gw):
    rt, api = gw
    team = await api.team("support")
    agents = [await api.agent(f"a{i}", [team]) for i in range(8)]
    for round_ in range(5):
        cid = (await seed_conversation(api.pool, f"race-{round_}", team_id=team))["conversation_id"]
        results = await asyncio.gather(*(api.call("POST", f"/api/v1/conversations/{cid}/claim", token)
                                         for _, token in agents))
        statuses = sorted(s for s, _ in results)
        assert statuses == [200] + [409] * 7, statuses
        winner = next(agents[i][0] for i, (s, _) in enumerate(results) if s == 200)
        losers = [body for s, body in results if s == 409]
        assert all(b["error"]["code"] == "already_assigned" and b["error"]["assignee_id"] == winner for b in losers)
        assert await api.pool.fetchval("SELECT assignee_id FROM conversations WHERE id = $1", cid) == winner
        claims = await api.pool.fetchval(
            "SELECT count(*) FROM messages WHERE conversation_id = $1 AND content->>'event' = 'claimed'", cid)
        assert claims == 1


async def test_claiming_your_own_is_idempotent_and_assign_overrides(gw):
    rt, api = gw
    a_id, a = await api.agent("a")
    b_id, b = await api.agent("b")
    cid = (await seed_conversation(api.pool, "c"))["conversation_id"]
    await api.ok("POST", f"/api/v1/conversations/{cid}/claim", a)
    await api.ok("POST", f"/api/v1/conversations/{cid}/claim", a)
    status, _ = await api.call("POST", f"/api/v1/conversations/{cid}/claim", b)
    assert status == 409
    moved = await api.ok("POST", f"/api/v1/conversations/{cid}/assign", a, json={"agent_id": b_id})
    assert moved["assignee"]["id"] == b_id
    status, body = await api.call("POST", f"/api/v1/conversations/{cid}/assign", a, json={"agent_id": 424242})
    assert status == 422 and body["error"]["code"] == "unknown_agent"
    freed = await api.ok("POST", f"/api/v1/conversations/{cid}/unassign", b)
    assert freed["assignee_id"] is None
    mine = await api.ok("GET", "/api/v1/conversations", a, params={"assignee_id": str(a_id)})
    assert mine["conversations"] == []
    claimed_by_bot_takeover = await seed_conversation(api.pool, "bot-conv", mode="bot")
    taken = await api.ok("POST", f"/api/v1/conversations/{claimed_by_bot_takeover['conversation_id']}/claim", a)
    assert taken["mode"] == "agent" and taken["episode"]["escalation_reason"] == "claimed"


async def test_auto_assignment_round_robin_within_capacity_among_online_agents(gw):
    rt, api = gw
    team = await api.team("support")
    other = await api.team("other")
    a_id, a = await api.agent("a", [team], capacity=2)
    b_id, b = await api.agent("b", [team], capacity=1)
    c_id, c = await api.agent("c", [team], capacity=5)      # stays offline
    d_id, d = await api.agent("d", [other], capacity=5)     # online, but another team
    convs = [(await seed_conversation(api.pool, f"w{i}", team_id=team))["conversation_id"] for i in range(5)]
    await api.pool.execute("UPDATE conversations SET waiting_since = now() - interval '1 hour' + id * interval '1 second'")
    assert (await api.ok("POST", "/api/v1/assignments/run"))["assigned"] == 0, "nobody is online yet"

    await api.ok("POST", "/api/v1/presence", d, json={"presence": "online"})
    await api.ok("POST", "/api/v1/presence", a, json={"presence": "online"})
    await api.ok("POST", "/api/v1/presence", b, json={"presence": "online"})
    await api.ok("POST", "/api/v1/assignments/run")
    rows = await api.pool.fetch("SELECT id, assignee_id FROM conversations ORDER BY waiting_since, id")
    assignees = [r["assignee_id"] for r in rows]
    # a and b alternate (longest-idle first) until b's capacity of 1 and a's of 2 are used up
    assert sorted(x for x in assignees if x) == sorted([a_id, a_id, b_id])
    assert assignees[:3].count(None) == 0 and assignees[3:] == [None, None], "longest waiting go first"
    assert d_id not in assignees and c_id not in assignees

    # resolving frees capacity; the next pass fills it
    first_of_b = next(r["id"] for r in rows if r["assignee_id"] == b_id)
    await api.ok("POST", f"/api/v1/conversations/{first_of_b}/resolve", b, json={})
    await api.ok("POST", "/api/v1/assignments/run")   # (the background pass may have been first)
    assert await api.pool.fetchval("SELECT count(*) FROM conversations WHERE assignee_id = $1 AND status = 'open'",
                                   b_id) == 1
    # away agents get nothing more
    await api.ok("POST", "/api/v1/presence", a, json={"presence": "away"})
    await api.pool.execute("UPDATE conversations SET assignee_id = NULL, status = 'open' WHERE assignee_id = $1", a_id)
    await api.ok("POST", "/api/v1/assignments/run")
    assert await api.pool.fetchval("SELECT count(*) FROM conversations WHERE assignee_id = $1", a_id) == 0
    listed = {x["id"]: x["presence"] for x in await api.ok("GET", "/api/v1/agents")}
    assert listed == {a_id: "away", b_id: "online", c_id: "offline", d_id: "online"}
    assert {c_ for c_ in convs} == {r["id"] for r in rows}


async def test_auto_assigner_runs_in_the_background(gw):
    rt, api = gw
    a_id, a = await api.agent("a")
    await api.ok("POST", "/api/v1/presence", a, json={"presence": "online"})
    cid = (await seed_conversation(api.pool, "later"))["conversation_id"]

    async def assigned():
        return await api.pool.fetchval("SELECT assignee_id FROM conversations WHERE id = $1", cid)
    from gateway.devtools.testing import wait_for
    assert await wait_for(assigned, timeout=5) == a_id
    event = await api.pool.fetchval(
        "SELECT content->>'event' FROM messages WHERE conversation_id = $1 AND kind = 'event'", cid)
    assert event == "auto_assigned"
