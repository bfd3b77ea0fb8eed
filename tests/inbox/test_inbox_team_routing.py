"""Escalations go to teams: the team the escalation names, else the routing rules of
flows/routing.yaml (channel, language, contact attribute, label), with per-team business hours and
out-of-hours messages in the contact's language; auto-assignment stays within the team."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest
from inbox_support import Api

from gateway.devtools.testing import running_gateway, wait_for
from gateway.domain.timers import ManualClock
from gateway.inbox.team_routing import Facts, RoutingError, parse_routing
from gateway.journeys.model import EscalateStep

FLOWS = Path(__file__).resolve().parents[2] / "flows"
SUNDAY_NOON_UTC = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

ROUTING = """\
version: 1
default: support
rules:
  - team: billing
    when: {label: [billing, invoices]}
  - team: enterprise
    when: {channel: api, attribute: {plan: enterprise}}
  - team: spanish
    when: {language: es}
teams:
  spanish:
    business_hours: {timezone: Europe/Madrid, monday: "09:00-18:00"}
    out_of_hours_message:
      en: "Our Spanish desk is back {when}."
      es: "Nuestro equipo vuelve el {date} a las {time} ({timezone})."
"""


def test_rules_pick_the_first_matching_team_else_the_default():
    config = parse_routing(ROUTING)
    assert config.choose(Facts("sms", "es_MX")) == ("spanish", "rule 3")
    assert config.choose(Facts("api", "es", attributes={"plan": "enterprise"})) == ("enterprise", "rule 2")
    assert config.choose(Facts("api", None, frozenset({"invoices"}), {"plan": "enterprise"})) == ("billing", "rule 1")
    assert config.choose(Facts("sms", "de", attributes={"plan": "free"})) == ("support", "default")
    assert config.teams["spanish"].message_for("es_ES").startswith("Nuestro")
    assert config.teams["spanish"].message_for("fr").startswith("Our Spanish")
    assert parse_routing("rules: []\n").choose(Facts("sms")) == (None, "no rule matched")
    assert config.version != parse_routing(ROUTING.replace("billing", "finance")).version


@pytest.mark.parametrize("text, where, problem", [
    ("rules:\n  - team: a\n    when: {colour: red}\n", ":2:", "unknown condition colour"),
    ("rules:\n  - when: {channel: sms}\n", ":2:", "needs a team"),
    ("teams:\n  a:\n    business_hours: {timezone: Mars/Base, monday: 09:00-18:00}\n", ":3:", "unknown time zone"),
    ("rules: [\n", ":2:", "not valid YAML"),
])
def test_a_bad_routing_file_is_refused_with_its_line(text, where, problem):
    with pytest.raises(RoutingError) as err:
        parse_routing(text, source="flows/routing.yaml")
    assert str(err.value).startswith("flows/routing.yaml" + where) and problem in str(err.value), str(err.value)


def test_a_journey_escalation_can_name_a_team():
    from gateway.journeys.model import parse_journey

    journey = parse_journey("""
name: vip_cart
entry: {event: cart_abandoned}
goal: {event: order_placed}
steps:
  - {id: human, escalate: {reason: high_value_cart, team: sales}}
""")
    assert journey.steps["human"] == EscalateStep("human", "end", reason="high_value_cart", team="sales")


@pytest.fixture
async def routed(settings, pool, inbox_clean, redis_client, tmp_path):
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    (flows / "routing.yaml").write_text(ROUTING)
    s = settings.with_(default_handler="agent", flows_dir=flows)
    async with running_gateway(s, clock=ManualClock(SUNDAY_NOON_UTC)) as (rt, url), \
            aiohttp.ClientSession() as http:
        yield rt, Api(http, url, pool)


async def say(api: Api, token: str, external_id: str, cmid: str, text: str) -> int:
    created = await api.ok("POST", "/api/v1/inbound", token, expect=201,
                           json={"client_message_id": cmid, "contact": {"external_id": external_id}, "text": text})

    async def processed():
        return await api.pool.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE id = $1",
                                       created["message_id"])
    await wait_for(processed, timeout=20)
    return created["conversation_id"]


async def test_escalations_are_routed_by_rules_and_assigned_within_the_team(routed):
    rt, api = routed
    integration = await api.token("integration")
    support, enterprise, spanish = [await api.team(n) for n in ("support", "enterprise", "spanish")]
    sup_id, sup = await api.agent("sam", [support], capacity=5)
    ent_id, ent = await api.agent("erin", [enterprise], capacity=5)
    await api.ok("POST", "/api/v1/presence", ent, json={"presence": "online"})

    # a contact known to be an enterprise customer, one who speaks Spanish, and one nobody knows
    async with api.pool.acquire() as conn:
        for ext, locale, attrs in (("acme", None, {"plan": "enterprise"}), ("lucia", "es_ES", {})):
            cid = await conn.fetchval("INSERT INTO contacts (external_id, locale, attributes) VALUES ($1, $2, $3) "
                                      "RETURNING id", ext, locale, attrs)
            await conn.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'api', $2)", cid, ext)
    acme = await say(api, integration, "acme", "a-1", "our SSO is down")
    lucia = await say(api, integration, "lucia", "l-1", "hola, necesito ayuda")
    nobody = await say(api, integration, "nobody", "n-1", "hello")
    teams = dict(await api.pool.fetch("SELECT id, team_id FROM conversations"))
    assert teams == {acme: enterprise, lucia: spanish, nobody: support}
    why = await api.pool.fetchval("SELECT content FROM messages WHERE conversation_id = $1 "
                                  "AND content->>'event' = 'team_routed'", acme)
    assert why["why"] == "rule 2" and why["rules_version"] == parse_routing(ROUTING).version

    # the Spanish desk is closed on Sunday: the customer hears so, in Spanish, once
    outs = await api.pool.fetch("SELECT body FROM messages WHERE conversation_id = $1 AND direction = 'out'", lucia)
    assert [r["body"] for r in outs] == ["Nuestro equipo vuelve el 2026-11-23 a las 09:00 (Europe/Madrid)."]
    assert await api.pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'out' "
                                   "AND conversation_id <> $1", lucia) == 0, "open teams send nothing"

    # auto-assignment stays in the team: the enterprise agent gets only the enterprise conversation
    await api.ok("POST", "/api/v1/assignments/run")
    assigned = dict(await api.pool.fetch("SELECT id, assignee_id FROM conversations"))
    assert assigned == {acme: ent_id, lucia: None, nobody: None}
    await api.ok("POST", "/api/v1/presence", sup, json={"presence": "online"})
    await api.ok("POST", "/api/v1/assignments/run")
    assert await api.pool.fetchval("SELECT assignee_id FROM conversations WHERE id = $1", nobody) == sup_id
    assert await api.pool.fetchval("SELECT assignee_id FROM conversations WHERE id = $1", lucia) is None

    # agents see their team's queue (and the unrouted one), not the others'
    seen = await api.ok("GET", "/api/v1/conversations", sup, params={"mode": "agent"})
    assert {c["id"] for c in seen["conversations"]} == {nobody}
    rules = await api.ok("GET", "/api/v1/routing", sup)
    assert rules["default"] == "support" and rules["rules"][1] == {
        "team": "enterprise", "when": {"channel": ["api"], "attribute": {"plan": ["enterprise"]}}}
    assert rules["teams"]["spanish"]["timezone"] == "Europe/Madrid"
    status, _ = await api.call("GET", "/api/v1/routing", None)
    assert status == 401


async def test_a_team_that_does_not_exist_leaves_the_conversation_where_it_is(routed):
    rt, api = routed
    integration = await api.token("integration")
    cid = await say(api, integration, "x", "x-1", "hello")      # default: support, which nobody created
    assert await api.pool.fetchval("SELECT team_id FROM conversations WHERE id = $1", cid) is None
    event = await api.pool.fetchval("SELECT content FROM messages WHERE conversation_id = $1 "
                                    "AND content->>'event' = 'team_unknown'", cid)
    assert event["team"] == "support"
