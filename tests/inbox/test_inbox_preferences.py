"""The preference page: a signed, expiring link per contact; a plain form (no JavaScript) showing each
channel and purpose with its state; saving records the change with the page as proof."""
from __future__ import annotations

import re
import time

import aiohttp
import pytest

from gateway.domain import consent
from gateway.domain.preferences import make_token

PHONE, EMAIL = "+14155550142", "pat@example.com"


async def _contact_and_link(api) -> tuple[int, str]:
    c = await api.ok("POST", "/api/v1/contacts", expect=201, json={
        "name": "Pat", "identities": [{"kind": "phone", "address": PHONE}, {"kind": "email", "address": EMAIL}]})
    link = await api.ok("POST", f"/api/v1/contacts/{c['id']}/preferences-link", expect=201)
    assert link["url"].startswith(api.url + "/preferences/") and link["expires_at"] > time.time() + 3600
    return c["id"], link["url"]


def _checked(page: str) -> dict[str, bool]:
    return {m.group(1): bool(m.group(2)) for m in re.finditer(r'name="([a-z]+\.[a-z]+)" value="on"( checked)?', page)}


async def test_the_page_shows_each_channel_and_saves_choices_with_proof(gw):
    rt, api = gw
    cid, url = await _contact_and_link(api)
    async with aiohttp.ClientSession() as browser:
        async with browser.get(url) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            page = await resp.text()
        assert '<meta name="viewport"' in page and "<script" not in page and '<form method="post">' in page
        assert _checked(page) == {"sms.marketing": False, "sms.transactional": True, "whatsapp.marketing": False,
                                  "whatsapp.transactional": True, "email.marketing": True, "email.transactional": True}
        # opt in to SMS offers, out of email offers: a plain form post, as a browser without JS sends it
        form = {"sms.marketing": "on", "sms.transactional": "on", "whatsapp.transactional": "on",
                "email.transactional": "on", "action": "save"}
        async with browser.post(url, data=form, headers={"User-Agent": "TestBrowser/1"}) as resp:
            assert resp.status == 200 and str(resp.url).endswith("?saved=1")
            page = await resp.text()
        assert "Your choices are saved" in page
        assert _checked(page)["sms.marketing"] is True and _checked(page)["email.marketing"] is False
    async with api.pool.acquire() as conn:
        assert await consent.blocked_reason(conn, kind="phone", address=PHONE, channel="sms", purpose="marketing") is None
        assert await consent.blocked_reason(conn, kind="email", address=EMAIL, channel="email", purpose="marketing")
    history = (await api.ok("GET", f"/api/v1/contacts/{cid}/consent"))["history"]
    assert {(h["channel"], h["purpose"], h["granted"]) for h in history} == {
        ("sms", "marketing", True), ("email", "marketing", False)}
    assert all(h["source"] == "preference page" and h["proof"]["user_agent"] == "TestBrowser/1"
               and h["proof"]["ip"] for h in history)
    assert {h["proof"]["shown"] for h in history} == {"Text messages (SMS): Offers and news", "Email: Offers and news"}


async def test_one_button_stops_all_marketing_another_every_message(gw):
    rt, api = gw
    cid, url = await _contact_and_link(api)
    await api.ok("POST", f"/api/v1/contacts/{cid}/consent", expect=201, json={
        "channel": "sms", "purpose": "marketing", "granted": True, "source": "form", "proof": {"ip": "192.0.2.9"}})
    async with aiohttp.ClientSession() as browser:
        async with browser.post(url, data={"action": "no_marketing"}) as resp:
            page = await resp.text()
        assert not any(v for k, v in _checked(page).items() if k.endswith(".marketing"))
        assert all(v for k, v in _checked(page).items() if k.endswith(".transactional"))
        async with browser.post(url, data={"action": "stop_all"}) as resp:
            page = await resp.text()
        assert not any(_checked(page).values())
    async with api.pool.acquire() as conn:
        for kind, address, channel in (("phone", PHONE, "sms"), ("phone", PHONE, "whatsapp"), ("email", EMAIL, "email")):
            assert await consent.blocked_reason(conn, kind=kind, address=address, channel=channel,
                                                purpose="transactional") == "opted_out"


async def test_expired_tampered_or_foreign_links_show_nothing(gw):
    rt, api = gw
    cid, url = await _contact_and_link(api)
    secret = rt.settings.secret_key
    expired = make_token(secret, cid, int(time.time()) - 5)
    other = make_token("another-secret", cid, int(time.time()) + 3600)
    token = url.rsplit("/", 1)[1]
    tampered = f"{cid + 1}.{token.split('.', 1)[1]}"
    async with aiohttp.ClientSession() as browser:
        for bad in (expired, other, tampered, "nonsense", "1.2"):
            async with browser.get(f"{api.url}/preferences/{bad}") as resp:
                assert resp.status == 404 and "expired or is not valid" in await resp.text()
                assert PHONE not in await resp.text()
            async with browser.post(f"{api.url}/preferences/{bad}", data={"action": "stop_all"}) as resp:
                assert resp.status == 404
    assert await api.pool.fetchval("SELECT count(*) FROM consent_history") == 0


@pytest.mark.slow   # drives a real headless Chromium
async def test_the_page_in_real_headless_chromium_without_javascript_on_a_phone(gw, tmp_path):
    """Chromium with JavaScript off, 390 px wide: the labels are tappable, saving works, one button
    unsubscribes from all marketing; a screenshot is kept beside the test run."""
    from pathlib import Path

    from gateway.devtools.testing import drive_browser, ensure_browser

    repo = Path(__file__).resolve().parents[2]
    browser_dir = repo / "tests" / "chat" / "browser"
    reason = ensure_browser(repo, browser_dir)
    if reason:
        pytest.skip(reason)
    rt, api = gw
    cid, url = await _contact_and_link(api)
    shot = tmp_path / "preferences.png"

    async def no_steps(name):
        return {}
    result, stderr = await drive_browser(repo / "tests" / "inbox" / "browser" / "drive_preferences.mjs", url, shot,
                                         on_step=no_steps, cwd=repo, env={"PLAYWRIGHT_DIR": str(browser_dir)},
                                         timeout=180)
    assert result is not None and "error" not in result, (result, stderr[-2000:])
    assert result["title"] == "Your message preferences" and result["fitsPhone"] and result["unlabelled"] == 0
    assert result["before"]["sms.marketing"] is False and result["before"]["email.marketing"] is True
    assert result["savedNote"].strip() == "Your choices are saved."
    assert result["afterSave"]["sms.marketing"] is True
    assert not any(v for k, v in result["afterUnsubscribe"].items() if k.endswith(".marketing"))
    assert all(v for k, v in result["afterUnsubscribe"].items() if k.endswith(".transactional"))
    assert shot.stat().st_size > 10_000
    async with api.pool.acquire() as conn:
        assert await consent.blocked_reason(conn, kind="phone", address=PHONE, channel="sms", purpose="marketing")
    sources = {h["source"] for h in (await api.ok("GET", f"/api/v1/contacts/{cid}/consent"))["history"]}
    assert sources == {"preference page"}
