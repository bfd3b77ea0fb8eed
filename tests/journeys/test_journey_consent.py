"""Journeys and consent: marketing on SMS waits for a recorded opt-in (the journey falls back to email,
opt-out by default); templates insert {preferences_url}; marketing emails carry the preference page."""
from __future__ import annotations

from datetime import datetime, timezone

from gateway.domain.preferences import read_token

PROMO = """
name: promo
entry: {event: promo}
steps:
  - id: offer
    send: {template: t, channels: [sms, email]}
templates:
  t:
    sms: "New offers for you. Your choices: {preferences_url}"
    email: {subject: "New offers", text: "Hello, new offers.", html: "<p>Hello, new offers.</p>"}
"""
NOON = datetime(2030, 1, 15, 17, 0, tzinfo=timezone.utc)
CONTACT = {"phone": "+14155550133", "email": "sam@example.com"}


async def test_without_an_sms_opt_in_the_offer_goes_by_email_with_the_preference_page(journey_env):
    async with journey_env(NOON, PROMO) as h:
        ev = await h.post_event("promo", CONTACT, opt_in=False)
        await h.advance(seconds=0)
        [send] = await h.sends()
        assert send["channel"] == "email"
        url = send["body"].rsplit("Choose what we send you: ", 1)[1].strip()
        assert read_token(h.rt.settings.secret_key, url.rsplit("/", 1)[1]) == ev["contact_id"]
        assert "your preferences</a>" in send["content"]["html"]
        assert await h.pool.fetchval("SELECT count(*) FROM messages WHERE channel = 'sms' AND direction = 'out'") == 0


async def test_with_an_opt_in_the_sms_carries_the_preferences_url_placeholder(journey_env):
    async with journey_env(NOON, PROMO) as h:
        ev = await h.post_event("promo", CONTACT)
        await h.advance(seconds=0)
        [send] = await h.sends()
        assert send["channel"] == "sms" and send["body"].startswith("New offers for you. Your choices: http")
        token = send["body"].rsplit("/preferences/", 1)[1]
        assert read_token(h.rt.settings.secret_key, token) == ev["contact_id"]
