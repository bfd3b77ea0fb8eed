"""Ingest through the API channel, end to end against real PostgreSQL and Redis."""
from __future__ import annotations

import aiohttp

from gateway.devtools.testing import running_gateway, wait_for

ADMIN = {"Authorization": "Bearer admin-test-token"}


async def test_api_inbound_is_stored_processed_and_routed_to_agents(settings, pool, clean, redis_client):
    async with running_gateway(settings) as (rt, url):
        async with aiohttp.ClientSession() as http:
            body = {"client_message_id": "m-1", "contact": {"external_id": "cust-9", "name": "Ana",
                                                            "phone": "+14155550100"},
                    "text": "Hello, café ☕"}
            async with http.post(f"{url}/api/v1/inbound", json=body, headers=ADMIN) as resp:
                assert resp.status == 201, await resp.text()
                created = await resp.json()
            assert created["seq"] == 1 and created["duplicate"] is False

            async def processed():
                return await pool.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE id = $1",
                                           created["message_id"])
            await wait_for(processed)
    conv = await pool.fetchrow("SELECT * FROM conversations WHERE id = $1", created["conversation_id"])
    assert conv["mode"] == "agent" and conv["status"] == "open" and conv["waiting_since"] is not None
    body_text = await pool.fetchval("SELECT body FROM messages WHERE id = $1", created["message_id"])
    assert body_text == "Hello, café ☕"
    kinds = {(r["kind"], r["address"]) for r in await pool.fetch(
        "SELECT kind, address FROM identities WHERE contact_id = $1", created["contact_id"])}
    assert kinds == {("api", "cust-9"), ("phone", "+14155550100")}
    events = await pool.fetch("SELECT content->>'event' AS e FROM messages WHERE conversation_id = $1 "
                              "AND kind = 'event'", created["conversation_id"])
    assert [e["e"] for e in events] == ["escalated"]
