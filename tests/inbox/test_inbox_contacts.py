"""Contacts: merge (threads interleaved by time, nothing lost), export, erase with suppression
tombstones, attribute edits, and search."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from inbox_support import seed_conversation

from gateway.devtools.testing import wait_for
from gateway.domain import consent
from gateway.domain.identity import address_hash


async def test_merge_interleaves_threads_by_time_and_loses_nothing(gw):
    rt, api = gw
    a = await seed_conversation(api.pool, "sms-ana", name="Ana", messages=3, text="sms")
    b = await seed_conversation(api.pool, "mail-ana", name=None, messages=3, text="mail")
    await api.pool.execute("UPDATE contacts SET attributes = $2 WHERE id = $1", a["contact_id"],
                           {"plan": "gold", "city": "Lisbon"})
    await api.pool.execute("UPDATE contacts SET attributes = $2 WHERE id = $1", b["contact_id"],
                           {"plan": "free", "vip": True})
    await api.pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'email', 'ana@example.com')",
                           b["contact_id"])
    # a's messages at minutes 0, 2, 4; b's at 1, 3, 5
    base = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
    for conv, first in ((a, 0), (b, 1)):
        await api.pool.execute(
            "UPDATE messages SET created_at = $2::timestamptz + (seq - 1) * 2 * interval '1 minute' WHERE conversation_id = $1",
            conv["conversation_id"], base + timedelta(minutes=first))
    await api.ok("POST", f"/api/v1/conversations/{b['conversation_id']}/labels", json={"add": ["from-email"]})
    await api.pool.execute("UPDATE messages SET created_at = $2 WHERE conversation_id = $1 AND kind <> 'message'",
                           b["conversation_id"], base)
    before_ids = {r["id"] for r in await api.pool.fetch("SELECT id FROM messages")}

    result = await api.ok("POST", f"/api/v1/contacts/{a['contact_id']}/merge", json={"contact_id": b["contact_id"]})
    assert result["conversation_id"] == a["conversation_id"] and result["moved_identities"] == 2
    assert result["moved_messages"] == 3

    history = await api.ok("GET", f"/api/v1/conversations/{a['conversation_id']}/messages", params={"limit": "100"})
    msgs = history["messages"]
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1)), "one contiguous seq"
    customer = [m["body"] for m in msgs if m["kind"] == "message"]
    assert customer == ["sms", "mail", "sms 1", "mail 1", "sms 2", "mail 2"], "interleaved in time order"
    assert {m["id"] for m in msgs} >= before_ids, "every message survived, ids unchanged"
    assert msgs[-1]["content"]["event"] == "contacts_merged"

    contact = await api.ok("GET", f"/api/v1/contacts/{a['contact_id']}")
    assert {(i["kind"], i["address"]) for i in contact["identities"]} == {
        ("api", "sms-ana"), ("api", "mail-ana"), ("email", "ana@example.com")}
    assert contact["attributes"] == {"plan": "gold", "city": "Lisbon", "vip": True}, "the target wins conflicts"
    status, _ = await api.call("GET", f"/api/v1/contacts/{b['contact_id']}")
    assert status == 404, "the merged contact is gone from the API"
    assert await api.pool.fetchval("SELECT merged_into FROM contacts WHERE id = $1", b["contact_id"]) == a["contact_id"]
    conv = await api.ok("GET", f"/api/v1/conversations/{a['conversation_id']}")
    assert conv["labels"] == ["from-email"] and conv["episodes"] == 2
    listed = await api.ok("GET", "/api/v1/conversations")
    assert [c["id"] for c in listed["conversations"]] == [a["conversation_id"]]

    # the customer writes again from the merged address: it lands in the one thread
    integration = await api.token("integration")
    created = await api.ok("POST", "/api/v1/inbound", integration, expect=201, json={
        "client_message_id": "after-merge", "contact": {"email": "ana@example.com"}, "text": "me again"})
    assert created["conversation_id"] == a["conversation_id"]
    status, _ = await api.call("POST", f"/api/v1/contacts/{a['contact_id']}/merge", json={"contact_id": a["contact_id"]})
    assert status == 422


async def test_merge_of_two_threads_without_messages(gw):
    rt, api = gw
    a = await seed_conversation(api.pool, "empty-a", messages=0)
    b = await seed_conversation(api.pool, "empty-b", messages=0)
    result = await api.ok("POST", f"/api/v1/contacts/{a['contact_id']}/merge", json={"contact_id": b["contact_id"]})
    assert result["conversation_id"] == a["conversation_id"] and result["moved_messages"] == 0
    history = await api.ok("GET", f"/api/v1/conversations/{a['conversation_id']}/messages")
    assert [m["seq"] for m in history["messages"]] == list(range(1, len(history["messages"]) + 1))
    last_seq = await api.pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1", a["conversation_id"])
    assert last_seq == len(history["messages"])


async def test_merge_moves_unprocessed_inbound_and_it_gets_processed(gw):
    rt, api = gw
    a = await seed_conversation(api.pool, "x1")
    b = await seed_conversation(api.pool, "x2", mode="bot")
    await api.pool.execute("UPDATE messages SET processed_at = NULL WHERE conversation_id = $1", b["conversation_id"])
    await api.ok("POST", f"/api/v1/contacts/{a['contact_id']}/merge", json={"contact_id": b["contact_id"]})

    async def processed():
        return await api.pool.fetchval("SELECT bool_and(processed_at IS NOT NULL) FROM messages "
                                       "WHERE conversation_id = $1 AND direction = 'in'", a["conversation_id"])
    await wait_for(processed, timeout=10)


async def test_export_and_erase_with_suppression_tombstone(gw):
    rt, api = gw
    c = await seed_conversation(api.pool, "del-me", name="Zoe", text="my card is 4242")
    await api.pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'phone', '+14155550111'), "
                           "($1, 'email', 'zoe@example.com')", c["contact_id"])
    async with api.pool.acquire() as conn:
        await consent.set_consent(conn, kind="phone", address="+14155550111", channel="sms", purpose="all",
                                  granted=False, source="keyword:STOP")
    await api.ok("PATCH", f"/api/v1/contacts/{c['contact_id']}", json={"attributes": {"dob": "1990-01-01"}})
    await api.ok("POST", f"/api/v1/conversations/{c['conversation_id']}/notes", json={"text": "called her"})

    export = await api.ok("GET", f"/api/v1/contacts/{c['contact_id']}/export")
    assert export["contact"]["name"] == "Zoe" and export["contact"]["attributes"] == {"dob": "1990-01-01"}
    assert {i["address"] for i in export["identities"]} == {"del-me", "+14155550111", "zoe@example.com"}
    assert [m["body"] for m in export["messages"] if m["kind"] != "event"] == ["my card is 4242", "called her"]
    assert export["consents"][0]["granted"] is False

    erased = await api.ok("POST", f"/api/v1/contacts/{c['contact_id']}/erase")
    assert erased["identities_removed"] == 3 and erased["suppressed_addresses"] == 1
    bodies = [r["body"] for r in await api.pool.fetch("SELECT body FROM messages WHERE conversation_id = $1",
                                                      c["conversation_id"])]
    assert all("4242" not in b and "called her" not in b for b in bodies)
    assert await api.pool.fetchval("SELECT count(*) FROM identities WHERE contact_id = $1", c["contact_id"]) == 0
    row = await api.pool.fetchrow("SELECT name, attributes, erased_at FROM contacts WHERE id = $1", c["contact_id"])
    assert row["name"] is None and row["attributes"] == {} and row["erased_at"] is not None
    assert await api.pool.fetchval("SELECT count(*) FROM consents") == 0
    assert await api.pool.fetchval("SELECT reason FROM suppressions WHERE address_hash = $1",
                                   address_hash("phone", "+14155550111")) == "erased_opted_out"
    assert await api.pool.fetchval("SELECT count(*) FROM suppressions WHERE address_hash = $1",
                                   address_hash("email", "zoe@example.com")) == 0
    found = await api.ok("GET", "/api/v1/search", params={"q": "4242"})
    assert found["messages"] == []
    status, _ = await api.call("GET", f"/api/v1/contacts/{c['contact_id']}")
    assert status == 404

    # the erased number writes in again: a new contact, but it can never be messaged
    integration = await api.token("integration")
    created = await api.ok("POST", "/api/v1/inbound", integration, expect=201, json={
        "client_message_id": "back", "contact": {"phone": "+14155550111"}, "text": "hello?"})
    assert created["contact_id"] != c["contact_id"]
    async with api.pool.acquire() as conn:
        assert await consent.blocked_reason(conn, kind="phone", address="+14155550111", channel="sms",
                                            purpose="reply") == "suppressed"
    audit = await api.ok("GET", "/api/v1/audit", params={"contact_id": str(c["contact_id"])})
    assert [e["action"] for e in audit["entries"]][:2] == ["contact_erase", "contact_export"]


async def test_contact_edit_and_search(gw):
    rt, api = gw
    c = await seed_conversation(api.pool, "ext-77", name="Mariana Souza", text="My invoice shows double charges")
    await api.pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'email', 'mari@example.org')",
                           c["contact_id"])
    patched = await api.ok("PATCH", f"/api/v1/contacts/{c['contact_id']}",
                           json={"attributes": {"company": "Acme Foods", "tier": 3}})
    assert patched["attributes"] == {"company": "Acme Foods", "tier": 3}
    patched = await api.ok("PATCH", f"/api/v1/contacts/{c['contact_id']}",
                           json={"attributes": {"tier": None}, "name": "Mariana S."})
    assert patched["attributes"] == {"company": "Acme Foods"} and patched["name"] == "Mariana S."

    async def hits(q, kind="all"):
        return await api.ok("GET", "/api/v1/search", params={"q": q, "type": kind})
    assert [m["conversation_id"] for m in (await hits("invoice charges"))["messages"]] == [c["conversation_id"]]
    assert "<b>invoice</b>" in (await hits("invoice"))["messages"][0]["snippet"]
    assert (await hits("invoice -double"))["messages"] == []
    assert [x["id"] for x in (await hits("acme", "contacts"))["contacts"]] == [c["contact_id"]]
    assert [x["id"] for x in (await hits("mari@exa", "contacts"))["contacts"]] == [c["contact_id"]]
    assert [x["id"] for x in (await hits("mariana", "contacts"))["contacts"]] == [c["contact_id"]]
    assert (await hits("invoice", "contacts"))["messages"] == []
    status, _ = await api.call("GET", "/api/v1/search", params={"q": " "})
    assert status == 400
