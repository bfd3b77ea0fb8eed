"""Contacts API: create with identities, list with search and keyset paging, add (409 or merge) and
remove identities."""
from __future__ import annotations

from inbox_support import seed_conversation


async def test_create_list_search_and_page_contacts(gw):
    rt, api = gw
    ana = await api.ok("POST", "/api/v1/contacts", expect=201, json={
        "name": "Ana Lima", "attributes": {"plan": "gold", "language": "pt"}, "locale": "pt-BR",
        "timezone": "America/Sao_Paulo",
        "identities": [{"kind": "phone", "address": "+1 (415) 555-0170"}, {"kind": "email", "address": "Ana@Example.com"},
                       {"kind": "external_id", "address": "crm-17"}]})
    assert {(i["kind"], i["address"]) for i in ana["identities"]} == {
        ("phone", "+14155550170"), ("email", "ana@example.com"), ("api", "crm-17")}
    assert ana["attributes"] == {"plan": "gold", "language": "pt"} and ana["external_id"] == "crm-17"
    assert (ana["locale"], ana["timezone"]) == ("pt_BR", "America/Sao_Paulo")
    moved = await api.ok("PATCH", f"/api/v1/contacts/{ana['id']}", json={"timezone": "Europe/Lisbon", "locale": None})
    assert (moved["locale"], moved["timezone"]) == (None, "Europe/Lisbon")
    for bad in ({"timezone": "Mars/Olympus"}, {"locale": "x"}, {"locale": "en; DROP"}):
        status, err = await api.call("PATCH", f"/api/v1/contacts/{ana['id']}", json=bad)
        assert status == 400 and err["error"]["field"] == next(iter(bad)), bad
    ids = [ana["id"]] + [(await api.ok("POST", "/api/v1/contacts", expect=201, json={"name": f"Person {i}"}))["id"]
                         for i in range(4)]

    page1 = await api.ok("GET", "/api/v1/contacts", params={"limit": "2"})
    page2 = await api.ok("GET", "/api/v1/contacts", params={"limit": "2", "cursor": page1["next_cursor"]})
    page3 = await api.ok("GET", "/api/v1/contacts", params={"limit": "2", "cursor": page2["next_cursor"]})
    seen = [c["id"] for c in page1["contacts"] + page2["contacts"] + page3["contacts"]]
    assert seen == sorted(ids, reverse=True) and page3["next_cursor"] is None
    found = await api.ok("GET", "/api/v1/contacts", params={"q": "+1415555"})
    assert [c["id"] for c in found["contacts"]] == [ana["id"]]
    assert found["contacts"][0]["identities"][0]["address"] == "+14155550170"
    assert [c["id"] for c in (await api.ok("GET", "/api/v1/contacts", params={"q": "lima"}))["contacts"]] == [ana["id"]]

    status, err = await api.call("POST", "/api/v1/contacts", json={
        "name": "Copy", "identities": [{"kind": "email", "address": "ana@example.com"}]})
    assert status == 409 and err["error"]["code"] == "identity_taken" and err["error"]["contact_id"] == ana["id"]
    for bad in ({"identities": [{"kind": "fax", "address": "1"}]}, {"identities": [{"kind": "phone", "address": "x"}]},
                {"attributes": []}, {"name": 5}):
        status, _ = await api.call("POST", "/api/v1/contacts", json=bad)
        assert status == 400, bad
    status, _ = await api.call("GET", "/api/v1/contacts", params={"cursor": "abc"})
    assert status == 400
    assert await api.pool.fetchval("SELECT count(*) FROM contacts") == 5


async def test_identity_owned_by_another_contact_is_409_or_merged_on_request(gw):
    rt, api = gw
    sms = await seed_conversation(api.pool, "by-sms", name="Bo", messages=2, text="sms")
    mail = await seed_conversation(api.pool, "by-mail", name=None, messages=1, text="mail")
    await api.pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'email', 'bo@example.com')",
                           mail["contact_id"])
    path = f"/api/v1/contacts/{sms['contact_id']}/identities"
    added = await api.ok("POST", path, expect=201, json={"kind": "phone", "address": "+14155550199"})
    assert "+14155550199" in [i["address"] for i in added["identities"]]
    again = await api.ok("POST", path, expect=200, json={"kind": "phone", "address": "+1 415 555 0199"})
    assert len(again["identities"]) == len(added["identities"])

    status, err = await api.call("POST", path, json={"kind": "email", "address": "BO@example.com"})
    assert status == 409 and err["error"]["contact_id"] == mail["contact_id"]
    assert "contact " + str(mail["contact_id"]) in err["error"]["message"]
    merged = await api.ok("POST", path, expect=201, json={"kind": "email", "address": "bo@example.com", "merge": True})
    assert merged["merged"]["merged_contact_id"] == mail["contact_id"]
    assert {i["address"] for i in merged["identities"]} == {"by-sms", "+14155550199", "by-mail", "bo@example.com"}
    assert await api.pool.fetchval("SELECT merged_into FROM contacts WHERE id = $1", mail["contact_id"]) == sms["contact_id"]
    assert await api.pool.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1 AND kind = 'message'",
                                   sms["conversation_id"]) == 3

    removed = await api.ok("DELETE", path, json={"kind": "phone", "address": "+14155550199"})
    assert "+14155550199" not in [i["address"] for i in removed["identities"]]
    status, _ = await api.call("DELETE", path, json={"kind": "phone", "address": "+14155550199"})
    assert status == 404
    lone = await api.ok("POST", "/api/v1/contacts", expect=201, json={"identities": [{"kind": "phone", "address": "+14155550188"}]})
    status, err = await api.call("DELETE", f"/api/v1/contacts/{lone['id']}/identities",
                                 json={"kind": "phone", "address": "+14155550188"})
    assert status == 422 and err["error"]["code"] == "last_identity"
    audit = await api.ok("GET", "/api/v1/audit", params={"contact_id": str(sms["contact_id"])})
    assert [e["action"] for e in audit["entries"]][:3] == ["identity_remove", "identity_add", "identity_add"]
