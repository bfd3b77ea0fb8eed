"""The agent console in a real headless Chromium, two agents in two browsers, against the real
gateway with a fake Twilio: sign in, an escalated conversation appears live, its history across
the API channel, SMS and WhatsApp, a reply the customer receives through the fake provider (once,
despite a double click), its delivery status, a private note, resolve; the second agent sees the
assignment change live, and going online brings it waiting conversations (auto-assignment); XSS
payloads render as text; a forged request is refused; a deactivated
agent's open page goes to sign-in by itself (the server closes its feed). Screenshots of the queue, a conversation and the dashboard go to a temporary directory,
or to GATEWAY_TEST_SHOTS (set it to docs/ to refresh README's).

Needs Debian's `chromium`, node and playwright-core (the widget test's tests/chat/browser); skips
with the reason when they are missing and `.ci/browser` cannot install them.
"""
from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from console_support import PASSWORD, admin

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import drive_browser, ensure_browser, running_gateway, wait_for
from gateway.domain import auth, thread

pytestmark = pytest.mark.slow   # drives a real headless Chromium

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PLAYWRIGHT_DIR = REPO / "tests" / "chat" / "browser"
OUR_SMS, OUR_WA, CUSTOMER = "+15550001111", "+15550002222", "+14155550123"
XSS_NAME = '<img src="x" onerror="window.__xss=1">Eve'
XSS_TEXT = '<img src="x" onerror="window.__xss=2"> my parcel never came'
RECEIPT = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
XSS_FILE = '<img src="x" onerror="window.__xss=3">invoice.pdf'


@pytest.fixture(scope="module")
def browser_ready():
    reason = ensure_browser(REPO, PLAYWRIGHT_DIR)
    if reason:
        pytest.skip(reason)


async def _customer_writes(url: str, fake: FakeTwilio, pool) -> dict:
    """The same customer on the API channel (named, with a file), then SMS, then WhatsApp."""
    async with pool.acquire() as conn:
        integration = (await auth.create_token(conn, name="crm", role="integration"))[1]
    async with aiohttp.ClientSession() as http:
        for i, (name, text) in enumerate((("Liam Chen", "Can I change my delivery address?"),
                                          ("Mia Rossi", "Refund for order 981, please"))):
            async with http.post(f"{url}/api/v1/inbound", headers={"Authorization": f"Bearer {integration}"}, json={
                    "client_message_id": f"other-{i}", "contact": {"external_id": f"crm-{i}", "name": name},
                    "text": text}) as resp:
                assert resp.status == 201
        for number, name, text in (("+14155550177", "Noah Park", "Is the store open on Sunday?"),):
            params = twilio_inbound_params(number, OUR_WA, text, whatsapp=True, profile_name=name)
            assert (await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params, fake.auth_token))[0] == 200
        async with http.post(f"{url}/api/v1/inbound", headers={"Authorization": f"Bearer {integration}"}, json={
                "client_message_id": "crm-1", "contact": {"phone": CUSTOMER, "name": XSS_NAME},
                "text": "Order 1042 from the shop", "attachments": [
                    {"url": "https://files.example.com/invoice.pdf", "content_type": "application/pdf",
                     "filename": XSS_FILE}]}) as resp:
            assert resp.status == 201, await resp.text()
            cid = (await resp.json())["conversation_id"]
    for text, whatsapp in ((XSS_TEXT, False), ("Anyone there?", True)):
        params = twilio_inbound_params(CUSTOMER, OUR_WA if whatsapp else OUR_SMS, text, whatsapp=whatsapp)
        status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params, fake.auth_token)
        assert status == 200
    return {"conversation_id": cid, "messages": 3, "last_text": "Anyone there?",
            "file_b64": base64.b64encode(RECEIPT).decode(),
            "reply": "Sorry about that, Eve. The parcel left today.", "note": "VIP customer: refund if late"}


async def _last_week(pool, agent_id: int) -> None:
    """Six earlier days of resolved work (for the dashboard screenshot): SQL, then backdated."""
    channels = ("sms", "whatsapp", "email", "webchat")
    async with pool.acquire() as conn, conn.transaction():
        for day in range(1, 7):
            for n in range(3 + day % 3):
                channel = channels[(day + n) % len(channels)]
                contact = await conn.fetchval("INSERT INTO contacts (name) VALUES ($1) RETURNING id",
                                              f"Past customer {day}-{n}")
                cid = await conn.fetchval(
                    "INSERT INTO conversations (contact_id, status, mode) VALUES ($1, 'resolved', 'agent') RETURNING id",
                    contact)
                for i in range(2 + n % 2):
                    await thread.append(conn, cid, direction="in", channel=channel, body=f"question {i}",
                                        author_type="customer", processed=True)
                bot_only = n % 3 == 2
                if not bot_only:
                    await thread.append(conn, cid, direction="out", channel=channel, body="answer",
                                        author_type="agent", author_id=agent_id, status="delivered")
                start = timedelta(days=day)
                await conn.execute(
                    """UPDATE messages SET created_at = now() - $2::interval + (seq * interval '3 minutes')
                       WHERE conversation_id = $1""", cid, start)
                await conn.execute(
                    """INSERT INTO episodes (conversation_id, opened_at, escalated_at, first_response_at, resolved_at,
                           resolved_by, channel, csat_score, csat_at, csat_agent_id)
                       VALUES ($1, now() - $2::interval, CASE WHEN $3 THEN NULL ELSE now() - $2::interval END,
                               CASE WHEN $3 THEN NULL ELSE now() - $2::interval + $4::interval END,
                               now() - $2::interval + $5::interval, $6, $7,
                               $8::smallint, CASE WHEN $8::smallint IS NOT NULL THEN now() - $2::interval + $5::interval END, $6)""",
                    cid, start, bot_only, timedelta(minutes=2 + day * 3 + n), timedelta(minutes=20 + day * 9 + n * 7),
                    None if bot_only else agent_id, channel, None if bot_only else 5 - n % 2)


async def test_two_agents_work_a_conversation_in_headless_chromium(browser_ready, settings, pool, clean,
                                                                   redis_client, tmp_path):
    shots = Path(os.environ.get("GATEWAY_TEST_SHOTS") or tmp_path / "shots")   # GATEWAY_TEST_SHOTS=docs refreshes README's
    shots.mkdir(parents=True, exist_ok=True)
    async with FakeTwilio() as fake:
        s = settings.with_(default_handler="agent", twilio_account_sid=fake.account_sid,
                           twilio_auth_token=fake.auth_token, twilio_from_number=OUR_SMS,
                           twilio_whatsapp_from=OUR_WA, twilio_api_base=fake.base_url)
        async with running_gateway(s) as (rt, url), aiohttp.ClientSession() as http:
            ana = await admin(http, url, "POST", "/api/v1/agents",
                              {"name": "Ana", "email": "ana@example.com", "password": PASSWORD, "role": "admin"})
            ben = await admin(http, url, "POST", "/api/v1/agents",
                              {"name": "Ben", "email": "ben@example.com", "password": PASSWORD})
            await admin(http, url, "POST", "/api/v1/canned-responses",
                        {"short_code": "thanks", "body": "Thanks for your patience!"})
            accounts = {"admin": {**ana, "password": PASSWORD}, "agent": {**ben, "password": PASSWORD}}
            info: dict = {}
            sent: list = []
            media: list = []

            async def on_step(name: str) -> dict:
                if name == "signed-in":       # the customer writes on three channels now
                    info.update(await _customer_writes(url, fake, pool), agent_id=ana["id"])
                    return info
                if name == "history":         # earlier days, for the dashboard
                    await _last_week(pool, info["agent_id"])
                    return {}
                assert name == "replied"      # the fake provider got the reply: it reports delivery

                async def received():
                    return [r for r in fake.requests if r.method == "POST" and r.value("Body") == info["reply"]]
                sent.append((await wait_for(received))[0])
                sid = next(sid for sid, m in fake.messages.items() if m.get("body") == info["reply"])

                async def recorded():         # Twilio reports after its answer reached us
                    return await pool.fetchval("SELECT provider_message_id FROM messages WHERE body = $1",
                                               info["reply"])
                assert await wait_for(recorded) == sid
                async with aiohttp.ClientSession() as provider:    # what Twilio does with MediaUrl
                    async with provider.get(sent[0].value("MediaUrl")) as resp:
                        assert resp.status == 200
                        media.append(await resp.read())
                status, _ = await fake.send_status_callback(f"{url}/webhooks/twilio/status", sid, "delivered")
                assert status == 200
                return {}

            result, stderr = await drive_browser(
                HERE / "browser" / "drive_console.mjs", url, shots, json.dumps(accounts, default=str),
                on_step=on_step, cwd=HERE / "browser", env={"PLAYWRIGHT_DIR": str(PLAYWRIGHT_DIR)})
    assert result is not None, f"the browser script printed no result; stderr: {stderr[-2000:]}"
    assert "error" not in result, (result["error"], result["steps"])
    assert not result["pageErrors"], result["pageErrors"]

    # the whole history across channels, in order, user content as text
    customer = [m for m in result["thread"] if m["kind"] == "in"]
    assert [m["channel"] for m in customer] == ["api", "sms", "whatsapp"]
    assert [m["text"] for m in customer] == ["Order 1042 from the shop", XSS_TEXT, "Anyone there?"]
    assert customer[0]["attachments"] == [XSS_FILE]
    assert await pool.fetchval("SELECT presence FROM agents WHERE id = $1", ben["id"]) == "online"  # away, then online
    assert result["contactName"] == XSS_NAME and result["xss"]["contactPanel"] == XSS_NAME
    assert result["xss"] == {"flag": 0, "injectedImages": 0, "contactPanel": XSS_NAME}

    assert result["assigneeOnB"] == str(ana["id"])
    auto = await pool.fetchval("SELECT count(*) FROM conversations WHERE assignee_id = $1", ben["id"])
    assert 1 <= result["autoAssigned"] <= auto <= 3, "going online brought the waiting conversations to Ben"
    # the customer received the reply once, on WhatsApp (the channel they last wrote from)
    assert sent[0].value("To") == f"whatsapp:{CUSTOMER}" and result["replyCount"] == 1
    media_url = sent[0].value("MediaUrl")        # the uploaded file, fetched by the provider from our link
    assert media_url and media_url.startswith(f"{url}/media/") and media_url.endswith("/receipt.png")
    assert media == [RECEIPT]
    assert len([r for r in fake.requests if r.method == "POST" and r.value("Body") == info["reply"]]) == 1
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE body = $1", info["reply"]) == 1
    note = await pool.fetchrow("SELECT kind, direction FROM messages WHERE body = $1", info["note"])
    assert (note["kind"], note["direction"]) == ("note", "internal")
    assert result["keys"]["reply"] == "composer-input" and result["keys"]["note"] == "true"
    assert result["keys"]["previous"].startswith("#/inbox/") and result["keys"]["previous"] != f"#/inbox/{info['conversation_id']}"
    assert result["unnamed"] == [], "every control has a label"
    assert result["canned"] == "Thanks for your patience!" and result["replyModeForCanned"] == "false"
    assert await pool.fetchval("SELECT labels FROM conversations WHERE id = $1", info["conversation_id"]) == ["vip"]
    assert result["csrf"] == {"status": 403, "code": "csrf_failed"}
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE body = 'forged'") == 0
    assert await pool.fetchval("SELECT status FROM conversations WHERE id = $1", info["conversation_id"]) == "resolved"
    assert len(result["charts"]) >= 4
    seeded = await pool.fetchval("SELECT avg(csat_score)::float8 FROM episodes WHERE csat_score IS NOT NULL")
    assert result["csat"] == f"{seeded:.1f} / 5", result["csat"]
    assert "session has ended" in result["signedOutNotice"]
    assert await pool.fetchval("SELECT count(*) FROM agent_sessions WHERE agent_id = $1 AND ended_at IS NULL",
                               ben["id"]) == 0
    for name in ("console-queue", "console-conversation", "console-dashboard", "console-phone", "console-dark"):
        assert (shots / f"{name}.png").stat().st_size > 5000
