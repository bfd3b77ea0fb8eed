"""Consent regimes decided at send time, the consent API (proof, state, history), bulk import, export."""
from __future__ import annotations

import pytest

from gateway.channels.modes import routing_policy
from gateway.devtools.testing import running_gateway, wait_for
from gateway.domain import consent, thread
from gateway.domain.types import Channel, Purpose

PHONE, EMAIL = "+14155550123", "lea@example.com"
PROOF = {"text": "Text me offers (msg & data rates may apply)", "page": "https://shop.example/signup",
         "ip": "198.51.100.4"}


async def _contact(api) -> dict:
    integration = await api.token("integration")
    return await api.ok("POST", "/api/v1/inbound", integration, expect=201, json={
        "client_message_id": "hello", "contact": {"phone": PHONE, "email": EMAIL}, "text": "hi"})


async def _queue(pool, conv: int, channel: Channel, purpose: Purpose) -> int:
    to = EMAIL if channel is Channel.EMAIL else PHONE
    async with pool.acquire() as conn, conn.transaction():
        return await thread.queue_outbound(conn, conv, text=f"{purpose.value} on {channel.value}", author_type="journey",
                                           purpose=purpose, channel=channel, to_address=to, subject="News")


async def _outcome(pool, mid: int) -> str | None:
    """Once the outbox is done with the message (whichever sender took it): 'sent' or the skip reason."""
    async def done():
        row = await pool.fetchrow("SELECT o.state, m.error_code FROM outbox o JOIN messages m ON m.id = o.message_id "
                                  "WHERE o.message_id = $1", mid)
        if row["state"] in ("pending", "sending"):
            return None
        return row["error_code"] if row["state"] == "skipped" else row["state"]
    return await wait_for(done, timeout=60)


def test_the_rule_opt_in_needs_a_grant_opt_out_needs_no_refusal():
    d = consent.decide
    assert d(suppressed=False, revoked=set(), granted=set(), purpose="marketing", regime="opt_in") == "no_marketing_consent"
    assert d(suppressed=False, revoked=set(), granted={"marketing"}, purpose="marketing", regime="opt_in") is None
    assert d(suppressed=False, revoked=set(), granted=set(), purpose="marketing", regime="opt_out") is None
    assert d(suppressed=False, revoked={"marketing"}, granted=set(), purpose="marketing", regime="opt_out")
    assert d(suppressed=False, revoked={"all"}, granted={"marketing"}, purpose="marketing", regime="opt_in") == "opted_out"
    assert d(suppressed=False, revoked=set(), granted=set(), purpose="reply", regime="opt_out") is None
    assert consent.regime_for((), "sms", "marketing") == "opt_in"
    assert consent.regime_for((), "whatsapp", "marketing") == "opt_in"
    assert consent.regime_for((), "email", "marketing") == "opt_out"
    assert consent.regime_for((("email", "marketing", "opt_in"),), "email", "marketing") == "opt_in"
    assert consent.parse_regimes("email.marketing=opt_in, sms.transactional=opt_out") == (
        ("email", "marketing", "opt_in"), ("sms", "transactional", "opt_out"))
    with pytest.raises(ValueError, match="fax.marketing"):
        consent.parse_regimes("fax.marketing=opt_in")


async def test_marketing_on_sms_and_whatsapp_waits_for_a_recorded_opt_in_email_is_opt_out(gw):
    rt, api = gw
    c = await _contact(api)
    conv, cid = c["conversation_id"], c["contact_id"]
    sms = await _queue(api.pool, conv, Channel.SMS, Purpose.MARKETING)
    wa = await _queue(api.pool, conv, Channel.WHATSAPP, Purpose.MARKETING)
    mail = await _queue(api.pool, conv, Channel.EMAIL, Purpose.MARKETING)
    receipt = await _queue(api.pool, conv, Channel.SMS, Purpose.TRANSACTIONAL)
    reply = await _queue(api.pool, conv, Channel.SMS, Purpose.REPLY)
    await rt.outbox.send_due()
    assert await _outcome(api.pool, sms) == "no_marketing_consent"
    assert await _outcome(api.pool, wa) == "no_marketing_consent"
    assert await _outcome(api.pool, mail) == "done"
    assert await _outcome(api.pool, receipt) == "done" and await _outcome(api.pool, reply) == "done"
    # the journeys' probe (route options) says the same, through the same function
    async with api.pool.acquire() as conn:
        options = await thread.route_options(conn, conv, purpose=Purpose.MARKETING,
                                             policy=routing_policy(rt.settings))
    assert options.unavailable[Channel.SMS] == "no_marketing_consent" and Channel.EMAIL in options.routes

    state = await api.ok("GET", f"/api/v1/contacts/{cid}/consent")
    current = {(s["channel"], s["purpose"]): s for s in state["current"]}
    assert current[("sms", "marketing")] == {"channel": "sms", "purpose": "marketing", "regime": "opt_in",
                                            "allowed": False, "reason": "no_marketing_consent"}
    assert current[("email", "marketing")]["allowed"] is True and current[("sms", "reply")]["allowed"] is True

    await api.ok("POST", f"/api/v1/contacts/{cid}/consent", expect=201, json={
        "channel": "sms", "purpose": "marketing", "granted": True, "source": "signup form", "proof": PROOF})
    again = await _queue(api.pool, conv, Channel.SMS, Purpose.MARKETING)
    still_wa = await _queue(api.pool, conv, Channel.WHATSAPP, Purpose.MARKETING)
    await rt.outbox.send_due()
    assert await _outcome(api.pool, again) == "done"
    assert await _outcome(api.pool, still_wa) == "no_marketing_consent"   # the opt-in was for SMS only


async def test_email_marketing_can_be_made_opt_in_in_settings(settings, pool, inbox_clean, redis_client):
    import aiohttp
    from inbox_support import Api

    eu = settings.with_(consent_regimes=consent.parse_regimes("email.marketing=opt_in"))
    async with running_gateway(eu, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        api = Api(http, url, pool)
        c = await _contact(api)
        mail = await _queue(pool, c["conversation_id"], Channel.EMAIL, Purpose.MARKETING)
        await rt.outbox.send_due()
        assert await _outcome(pool, mail) == "no_marketing_consent"
        await api.ok("POST", f"/api/v1/contacts/{c['contact_id']}/consent", expect=201, json={
            "channel": "email", "purpose": "marketing", "granted": True, "source": "double opt-in",
            "proof": {"confirmed_link": "https://shop.example/confirm/abc"}})
        mail = await _queue(pool, c["conversation_id"], Channel.EMAIL, Purpose.MARKETING)
        await rt.outbox.send_due()
        assert await _outcome(pool, mail) == "done"


async def test_consent_api_records_opt_in_and_out_with_proof_and_full_history(gw):
    rt, api = gw
    cid = (await _contact(api))["contact_id"]
    path = f"/api/v1/contacts/{cid}/consent"
    recorded = await api.ok("POST", path, expect=201, json={
        "channel": "whatsapp", "purpose": "marketing", "granted": True, "source": "checkout checkbox", "proof": PROOF})
    assert recorded["recorded"] == [{"address_kind": "phone", "address": PHONE}]
    await api.ok("POST", path, expect=201, json={
        "channel": "whatsapp", "purpose": "marketing", "granted": False, "source": "call center",
        "proof": {"agent_note": "asked on the phone"}})
    state = await api.ok("GET", path)
    assert [(h["granted"], h["source"], h["proof"]) for h in state["history"]] == [
        (True, "checkout checkbox", PROOF), (False, "call center", {"agent_note": "asked on the phone"})]
    assert all(h["occurred_at"] for h in state["history"])
    assert [(r["channel"], r["purpose"], r["granted"]) for r in state["consents"]] == [("whatsapp", "marketing", False)]
    current = {(s["channel"], s["purpose"]): s["allowed"] for s in state["current"]}
    assert current[("whatsapp", "marketing")] is False and current[("whatsapp", "transactional")] is True

    for bad, field in (({"channel": "fax"}, "channel"), ({"purpose": "spam"}, "purpose"),
                       ({"granted": "yes"}, "granted"), ({"source": ""}, "source"),
                       ({"proof": None}, "proof"), ({"proof": ["x"]}, "proof")):
        body = {"channel": "sms", "purpose": "marketing", "granted": True, "source": "form", "proof": PROOF, **bad}
        status, err = await api.call("POST", path, json=body)
        assert status == 400 and err["error"]["field"] == field, (bad, err)
    status, err = await api.call("POST", path, json={"channel": "sms", "purpose": "marketing", "granted": True,
                                                     "source": "form", "proof": PROOF, "address": "+15550000000"})
    assert status == 422 and err["error"]["code"] == "no_address"
    status, _ = await api.call("POST", "/api/v1/contacts/999999/consent", json={
        "channel": "sms", "purpose": "marketing", "granted": False, "source": "form"})
    assert status == 404
    assert await api.pool.fetchval("SELECT count(*) FROM consent_history") == 2

    export = await api.ok("GET", f"/api/v1/contacts/{cid}/export")
    assert [h["source"] for h in export["consent_history"]] == ["checkout checkbox", "call center"]
    assert export["consent_history"][0]["proof"] == PROOF


async def test_bulk_import_checks_every_record_first_and_keeps_original_times(gw):
    rt, api = gw
    cid = (await _contact(api))["contact_id"]
    good = {"kind": "phone", "address": "(415) 555-0123", "channel": "sms", "purpose": "marketing", "granted": True,
            "source": "legacy list 2023", "proof": {"list": "newsletter-2023"}, "at": "2023-05-01T10:00:00Z"}
    status, err = await api.call("POST", "/api/v1/consent/import", json={"records": [
        {**good, "address": "+14155550123"}, {**good, "kind": "email"}, {**good, "channel": "email"}, {**good, "at": "x"}]})
    assert status == 400 and [e["index"] for e in err["error"]["errors"]] == [1, 2, 3]
    assert await api.pool.fetchval("SELECT count(*) FROM consent_history") == 0

    await api.ok("POST", f"/api/v1/contacts/{cid}/consent", expect=201, json={
        "channel": "sms", "purpose": "marketing", "granted": False, "source": "preference page"})
    out = await api.ok("POST", "/api/v1/consent/import", json={"records": [
        {**good, "address": "+14155550123"},
        {**good, "kind": "email", "address": "New@Example.com", "channel": "email", "at": None}]})
    assert out == {"imported": 2, "applied": 1, "history_only": 1}   # the newer opt-out stays current
    async with api.pool.acquire() as conn:
        assert await consent.blocked_reason(conn, kind="phone", address=PHONE, channel="sms", purpose="marketing")
        assert await consent.blocked_reason(conn, kind="email", address="new@example.com", channel="email",
                                            purpose="marketing") is None
    state = await api.ok("GET", f"/api/v1/contacts/{cid}/consent")
    assert [h["source"] for h in state["history"]][0] == "legacy list 2023"
