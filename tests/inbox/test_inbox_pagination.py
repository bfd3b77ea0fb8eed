"""Inbox lists: filters, both sorts, keyset pagination that neither repeats nor skips while rows
are inserted, stays on an index at scale; thread history paged both ways by seq."""
from __future__ import annotations

import asyncio

from inbox_support import seed_conversation

from gateway.inbox import queries
from gateway.inbox.scope import Scope


async def walk(api, token, params, limit=7, between=None):
    seen, cursor = [], None
    while True:
        p = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        page = await api.ok("GET", "/api/v1/conversations", token, params=p)
        seen.extend(page["conversations"])
        cursor = page["next_cursor"]
        if between:
            await between()
        if not cursor:
            return seen


async def seed_many(pool, n, prefix, *, offset_seconds=0):
    ids = []
    for i in range(n):
        ids.append((await seed_conversation(pool, f"{prefix}{i}"))["conversation_id"])
    await pool.execute(
        """UPDATE conversations SET waiting_since = '2025-01-01T00:00:00Z'::timestamptz + ($2 + id) * interval '1 minute',
               last_message_at = '2025-01-01T00:00:00Z'::timestamptz + ($2 + id) * interval '1 minute'
           WHERE id = ANY($1::bigint[])""", ids, offset_seconds)
    return ids


async def test_keyset_pages_neither_repeat_nor_skip_under_concurrent_inserts(gw):
    rt, api = gw
    original = await seed_many(api.pool, 40, "o")
    counter = {"n": 0}

    async def insert_some():
        # new conversations land both before and after the cursor, and tie on the sort key
        for offset in (-100_000, 100_000, 0):
            counter["n"] += 1
            cid = (await seed_conversation(api.pool, f"new{counter['n']}"))["conversation_id"]
            await api.pool.execute(
                """UPDATE conversations SET waiting_since = (SELECT waiting_since FROM conversations WHERE id = $2)
                       + $3 * interval '1 minute', last_message_at = now() WHERE id = $1""",
                cid, original[len(original) // 2], offset)

    for sort in ("waiting", "newest"):
        seen = await walk(api, "admin-test-token", {"sort": sort}, between=insert_some)
        ids = [c["id"] for c in seen]
        assert len(ids) == len(set(ids)), f"{sort}: a row was repeated"
        assert set(original) <= set(ids), f"{sort}: an existing row was skipped"
        key = "waiting_since" if sort == "waiting" else "last_message_at"
        keys = [(c[key], c["id"]) for c in seen]
        assert keys == sorted(keys, reverse=(sort == "newest")), f"{sort}: out of order"

    # truly concurrent: an inserter running while another client pages through
    stop = asyncio.Event()

    async def inserter():
        while not stop.is_set():
            await insert_some()

    task = asyncio.create_task(inserter())
    try:
        seen = await walk(api, "admin-test-token", {"sort": "waiting"}, limit=5)
    finally:
        stop.set()
        await task
    ids = [c["id"] for c in seen]
    assert len(ids) == len(set(ids)) and set(original) <= set(ids)


async def test_filters_and_sorts(gw):
    rt, api = gw
    team = await api.team("t")
    a_id, a = await api.agent("a", [team])
    c1 = (await seed_conversation(api.pool, "c1", team_id=team, channel="sms"))["conversation_id"]
    c2 = (await seed_conversation(api.pool, "c2", team_id=team, mode="bot"))["conversation_id"]
    c3 = (await seed_conversation(api.pool, "c3", status="pending"))["conversation_id"]
    await api.pool.execute("UPDATE conversations SET waiting_since = now() - interval '2 hours' WHERE id = $1", c3)
    await api.pool.execute("UPDATE conversations SET waiting_since = NULL, last_message_at = now() + interval '1 minute' "
                           "WHERE id = $1", c2)
    await api.ok("POST", f"/api/v1/conversations/{c1}/claim", a)
    await api.ok("POST", f"/api/v1/conversations/{c1}/labels", a, json={"add": ["urgent"]})

    async def ids(**params):
        page = await api.ok("GET", "/api/v1/conversations", params={k: str(v) for k, v in params.items()})
        return [c["id"] for c in page["conversations"]]

    assert await ids() == [c3, c1, c2], "longest waiting first, not waiting last"
    assert await ids(sort="newest") == [c2, c1, c3], "the agent's claim made c1 more recent than c3"
    assert await ids(status="pending") == [c3]
    assert await ids(mode="bot") == [c2]
    assert await ids(assignee_id=a_id) == [c1]
    assert await ids(unassigned="true") == [c3, c2]
    assert await ids(team_id=team) == [c1, c2]
    assert await ids(channel="sms") == [c1]
    assert await ids(label="urgent") == [c1]
    assert await ids(waiting_since_before="2100-01-01T00:00:00+00:00") == [c3, c1]
    status, body = await api.call("GET", "/api/v1/conversations", params={"waiting_since_before": "2100-01-01T00:00:00"})
    assert status == 400, "naive datetimes are rejected"
    status, body = await api.call("GET", "/api/v1/conversations", params={"cursor": "garbage"})
    assert status == 400 and body["error"]["field"] == "cursor"
    page = await api.ok("GET", "/api/v1/conversations", params={"limit": "1"})
    status, _ = await api.call("GET", "/api/v1/conversations", params={"cursor": page["next_cursor"], "sort": "newest"})
    assert status == 400, "a cursor only continues the sort it came from"


async def test_thread_history_pages_both_ways_by_seq(gw):
    rt, api = gw
    cid = (await seed_conversation(api.pool, "long", messages=25))["conversation_id"]
    latest = await api.ok("GET", f"/api/v1/conversations/{cid}/messages", params={"limit": "10"})
    assert [m["seq"] for m in latest["messages"]] == list(range(16, 26))
    assert latest["has_more_before"] and not latest["has_more_after"]
    older = await api.ok("GET", f"/api/v1/conversations/{cid}/messages", params={"limit": "10", "before_seq": "16"})
    assert [m["seq"] for m in older["messages"]] == list(range(6, 16)) and older["has_more_after"]
    oldest = await api.ok("GET", f"/api/v1/conversations/{cid}/messages", params={"limit": "10", "before_seq": "6"})
    assert [m["seq"] for m in oldest["messages"]] == [1, 2, 3, 4, 5] and not oldest["has_more_before"]
    forward = await api.ok("GET", f"/api/v1/conversations/{cid}/messages", params={"limit": "10", "after_seq": "0"})
    assert [m["seq"] for m in forward["messages"]] == list(range(1, 11)) and forward["has_more_after"]
    assert not forward["has_more_before"]
    tail = await api.ok("GET", f"/api/v1/conversations/{cid}/messages", params={"after_seq": "20"})
    assert [m["seq"] for m in tail["messages"]] == [21, 22, 23, 24, 25] and tail["has_more_before"]
    status, _ = await api.call("GET", f"/api/v1/conversations/{cid}/messages",
                               params={"after_seq": "1", "before_seq": "5"})
    assert status == 400


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_list_stays_on_an_index_at_scale(pool, inbox_clean):
    """100k conversations: any page, first or deep, reads an index in order (no sort of the table)."""
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO contacts (id, name) SELECT g, 'c' || g FROM generate_series(1, 100000) g;
               INSERT INTO conversations (contact_id, status, mode, team_id, waiting_since, last_message_at)
               SELECT g, (ARRAY['open','pending','snoozed','resolved'])[1 + g % 4], 'agent', NULL,
                      now() - g * interval '1 second', now() - (g % 1000) * interval '1 second'
               FROM generate_series(1, 100000) g;
               ANALYZE contacts; ANALYZE conversations;""")
        for sort in ("waiting", "newest"):
            for status in (None, "open"):
                f = queries.ConversationFilter(status=status, sort=sort)
                page, cursor = await queries.list_conversations(conn, Scope(everything=True), f, limit=50)
                for _ in range(3):   # a few pages deep, through the cursor
                    page, cursor = await queries.list_conversations(conn, Scope(everything=True), f, limit=50,
                                                                    cursor=cursor)
                sql, args = queries.list_query(Scope(everything=True), f, limit=50, cursor=cursor)
                plan = (await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))[0]["Plan"]
                kinds = {n["Node Type"] for n in _nodes(plan)}
                assert "Sort" not in kinds and "Seq Scan" not in {n["Node Type"] for n in _nodes(plan)
                                                                  if n.get("Relation Name") == "conversations"}, \
                    (sort, status, kinds)
                assert len(page) == 50
        await conn.execute("TRUNCATE conversations, contacts RESTART IDENTITY CASCADE")
