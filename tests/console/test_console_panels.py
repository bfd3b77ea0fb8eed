"""What the console's panels read besides the inbox: the bot flows and their states (hand-back
picker), a contact's consent per channel and purpose (contact panel)."""
from __future__ import annotations

import aiohttp
from console_support import admin

from gateway.devtools.testing import running_gateway
from gateway.domain import consent


async def test_flows_list_the_states_a_hand_back_can_pick(settings, pool, clean, redis_client):
    async with running_gateway(settings.with_(default_handler="flow"), roles=("http",)) as (rt, url), \
            aiohttp.ClientSession() as http:
        found = await admin(http, url, "GET", "/api/v1/flows")
    flows = {f["name"]: f for f in found["flows"]}
    assert found["default"] == "support" and "support" in flows
    support = flows["support"]
    names = [st["name"] for st in support["states"]]
    assert support["start"] in names and len(names) == len(set(names)) > 1


async def test_without_bot_flows_there_is_nothing_to_hand_back_to(settings, pool, clean, redis_client):
    async with running_gateway(settings.with_(default_handler="agent"), roles=("http",)) as (rt, url), \
            aiohttp.ClientSession() as http:
        assert await admin(http, url, "GET", "/api/v1/flows") == {"default": None, "flows": []}


async def test_contact_consent_per_channel_and_purpose_on_each_address(settings, pool, clean, redis_client):
    contact = await pool.fetchval("INSERT INTO contacts (name) VALUES ('Ana') RETURNING id")
    other = await pool.fetchval("INSERT INTO contacts (name) VALUES ('Bo') RETURNING id")
    await pool.execute("""INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'phone', '+14155550100'),
                          ($1, 'email', 'ana@example.com'), ($2, 'phone', '+14155550199')""", contact, other)
    async with pool.acquire() as conn:
        await consent.set_consent(conn, kind="phone", address="+14155550100", channel="sms", purpose="all",
                                  granted=False, source="keyword STOP")
        await consent.set_consent(conn, kind="email", address="ana@example.com", channel="email",
                                  purpose="marketing", granted=True, source="signup form")
        await consent.set_consent(conn, kind="phone", address="+14155550199", channel="sms", purpose="all",
                                  granted=False, source="keyword STOP")
    async with running_gateway(settings, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        found = await admin(http, url, "GET", f"/api/v1/contacts/{contact}/consent")
        assert await admin(http, url, "GET", "/api/v1/contacts/999999/consent", expect=404)
    assert [(c["channel"], c["purpose"], c["granted"], c["source"]) for c in found["consents"]] == [
        ("email", "marketing", True, "signup form"), ("sms", "all", False, "keyword STOP")]


async def test_contact_journeys_newest_first(settings, pool, clean, redis_client):
    contact = await pool.fetchval("INSERT INTO contacts (name) VALUES ('Ana') RETURNING id")
    other = await pool.fetchval("INSERT INTO contacts (name) VALUES ('Bo') RETURNING id")
    await pool.execute(
        """INSERT INTO journey_enrollments (journey, version, contact_id, status, step, entered_at, exited_at,
                                           exit_reason)
           VALUES ('onboarding', 'v1', $1, 'exited', 'welcome', now() - interval '2 days', now() - interval '1 day',
                   'goal_missed'),
                  ('cart_recovery', 'v1', $1, 'active', 'nudge', now(), NULL, NULL),
                  ('cart_recovery', 'v1', $2, 'active', 'nudge', now(), NULL, NULL)""", contact, other)
    async with running_gateway(settings, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        found = await admin(http, url, "GET", f"/api/v1/contacts/{contact}/journeys")
    assert [(j["journey"], j["status"], j["step"], j["exit_reason"]) for j in found["journeys"]] == [
        ("cart_recovery", "active", "nudge", None), ("onboarding", "exited", "welcome", "goal_missed")]


async def test_metrics_give_the_distribution_of_first_response_and_resolution(settings, pool, clean, redis_client):
    contact = await pool.fetchval("INSERT INTO contacts (name) VALUES ('Ana') RETURNING id")
    conv = await pool.fetchval("INSERT INTO conversations (contact_id) VALUES ($1) RETURNING id", contact)
    # first responses of 30 s, 2 min, 2 min and 2 days; resolutions of 10 min and 3 h
    for frt, res in ((30, 600), (120, 3 * 3600), (120, None), (2 * 86400, None)):
        await pool.execute(
            """INSERT INTO episodes (conversation_id, opened_at, escalated_at, first_response_at, resolved_at)
               VALUES ($1, now() - interval '3 days', now() - interval '3 days',
                       now() - interval '3 days' + $2 * interval '1 second',
                       now() - interval '3 days' + $3 * interval '1 second')""", conv, float(frt),
            float(res) if res else None)
    async with running_gateway(settings, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        week = await admin(http, url, "GET", "/api/v1/metrics/summary")
    assert [b["count"] for b in week["first_response_seconds"]["histogram"]] == [1, 2, 0, 0, 0, 0, 1]
    assert [b["up_to"] for b in week["first_response_seconds"]["histogram"]] == [60, 300, 900, 3600, 14400, 86400, None]
    assert [b["count"] for b in week["resolution_seconds"]["histogram"]] == [0, 0, 1, 0, 1, 0, 0]
