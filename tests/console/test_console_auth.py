"""Console sign-in through the real HTTP server: passwords, invites, the session cookie, CSRF on
every state change, failed-attempt limits, sign-out and deactivation ending the session."""
from __future__ import annotations

import aiohttp
import pytest
from console_support import PASSWORD, Browser, admin

from gateway.devtools.testing import running_gateway


@pytest.fixture
async def console(settings, pool, clean, redis_client):
    s = settings.with_(default_handler="agent", login_max_failures_account=3, login_max_failures_address=6)
    async with running_gateway(s, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        browsers: list[Browser] = []

        def browser() -> Browser:
            browsers.append(Browser(url))
            return browsers[-1]
        yield url, http, browser
        for b in browsers:
            await b.close()


async def unassigned_conversation(pool) -> int:
    contact = await pool.fetchval("INSERT INTO contacts (name, external_id) VALUES ('Ana', 'ana') RETURNING id")
    return await pool.fetchval(
        """INSERT INTO conversations (contact_id, status, mode, waiting_since) VALUES ($1, 'open', 'agent', now())
           RETURNING id""", contact)


async def test_password_sign_in_sets_an_httponly_samesite_cookie_and_cookie_calls_need_csrf(console, pool, capfd):
    url, http, browser = console
    agent = await admin(http, url, "POST", "/api/v1/agents", {"email": "Bo@Example.com", "password": PASSWORD})
    assert agent["email"] == "bo@example.com" and agent["has_password"] and "invite_url" not in agent
    assert "password_hash" not in agent
    b = browser()
    status, data, resp = await b.sign_in("bo@example.com")
    assert status == 200 and data["agent_id"] == agent["id"] and data["role"] == "agent"
    cookie_headers = resp.headers.getall("Set-Cookie")
    session_header = next(h for h in cookie_headers if h.startswith("gw_session="))
    assert "HttpOnly" in session_header and "SameSite=Strict" in session_header and "Path=/" in session_header
    csrf_header = next(h for h in cookie_headers if h.startswith("gw_csrf="))
    assert "HttpOnly" not in csrf_header and data["csrf_token"] in csrf_header

    status, me, _ = await b.call("GET", "/api/v1/me")
    assert status == 200 and me["agent_id"] == agent["id"] and me["token_id"] is None
    cid = await unassigned_conversation(pool)
    status, listed, _ = await b.call("GET", "/api/v1/conversations")
    assert status == 200 and [c["id"] for c in listed["conversations"]] == [cid]

    # state changes with the cookie alone (what a forged cross-site form or fetch could do) are refused
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": ""}):
        status, err, _ = await b.call("POST", f"/api/v1/conversations/{cid}/claim", csrf=False, headers=headers)
        assert status == 403 and err["error"]["code"] == "csrf_failed"
    assert await pool.fetchval("SELECT assignee_id FROM conversations WHERE id = $1", cid) is None
    status, claimed, _ = await b.call("POST", f"/api/v1/conversations/{cid}/claim")
    assert status == 200 and claimed["assignee"]["id"] == agent["id"]
    # the same CSRF token does not work with another agent's session
    other = await admin(http, url, "POST", "/api/v1/agents", {"email": "cy@example.com", "password": PASSWORD})
    b2 = browser()
    await b2.sign_in("cy@example.com")
    status, err, _ = await b2.call("POST", f"/api/v1/conversations/{cid}/notes", json={"text": "x"}, csrf=False,
                                   headers={"X-CSRF-Token": b.csrf})
    assert status == 403 and other["id"] != agent["id"]

    stored = await pool.fetchval("SELECT password_hash FROM agents WHERE id = $1", agent["id"])
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err and stored not in out + err


async def test_bearer_tokens_keep_working_without_csrf(console, pool):
    url, http, _ = console
    cid = await unassigned_conversation(pool)
    agent = await admin(http, url, "POST", "/api/v1/agents", {"name": "dee", "email": "dee@example.com"})
    token = (await admin(http, url, "POST", f"/api/v1/agents/{agent['id']}/tokens", {}))["token"]
    async with http.post(f"{url}/api/v1/conversations/{cid}/claim",
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200


async def test_invite_link_sets_the_password_once_and_signs_in(console, pool):
    url, http, browser = console
    agent = await admin(http, url, "POST", "/api/v1/agents", {"email": "eve@example.com", "role": "admin"})
    assert agent["name"] == "eve" and agent["role"] == "admin" and not agent["has_password"]
    invite = agent["invite_url"]
    assert invite.startswith(f"{url}/console#invite=")
    token = invite.split("#invite=", 1)[1]
    b = browser()
    status, _, _ = await b.sign_in("eve@example.com", "")
    assert status == 401, "no password yet: nobody signs in"
    status, err, _ = await b.call("POST", "/api/v1/invites/accept", json={"token": token, "password": "short"})
    assert status == 422 and err["error"]["code"] == "weak_password"
    status, data, _ = await b.call("POST", "/api/v1/invites/accept", json={"token": token, "password": PASSWORD})
    assert status == 201 and data["agent_id"] == agent["id"] and data["role"] == "admin"
    b.csrf = data["csrf_token"]
    status, teams, _ = await b.call("POST", "/api/v1/teams", json={"name": "billing"})
    assert status == 201, "an admin agent signed in by cookie may administer"
    status, err, _ = await browser().call("POST", "/api/v1/invites/accept", json={"token": token, "password": PASSWORD})
    assert status == 422 and err["error"]["code"] == "invalid_invite"
    status, _, _ = await browser().sign_in("eve@example.com")
    assert status == 200
    # a fresh invite replaces the old one
    again = await admin(http, url, "POST", f"/api/v1/agents/{agent['id']}/invite")
    assert again["invite_url"] != invite
    assert await pool.fetchval("SELECT count(*) FROM agent_invites WHERE used_at IS NULL") == 1
    status, _, _ = await browser().call("POST", "/api/v1/invites/accept", json={"token": "nope", "password": PASSWORD})
    assert status == 422


async def test_failed_sign_ins_are_limited_per_account_and_per_address(console):
    url, http, browser = console
    await admin(http, url, "POST", "/api/v1/agents", {"email": "fay@example.com", "password": PASSWORD})
    b = browser()
    for _ in range(3):
        status, err, _ = await b.sign_in("fay@example.com", "wrong password")
        assert status == 401 and err["error"]["code"] == "invalid_credentials"
    status, err, resp = await b.sign_in("fay@example.com")
    assert status == 429 and err["error"]["code"] == "too_many_attempts" and err["error"]["retry_after"] > 0
    # per address: 6 failures over several accounts (unknown ones too) block this address for everyone
    for i in range(3):
        status, _, _ = await b.sign_in(f"nobody{i}@example.com", "wrong password")
        assert status == 401
    await admin(http, url, "POST", "/api/v1/agents", {"email": "gil@example.com", "password": PASSWORD})
    status, _, _ = await b.sign_in("gil@example.com")
    assert status == 429


async def test_sign_out_ends_the_session_on_the_server(console):
    url, http, browser = console
    await admin(http, url, "POST", "/api/v1/agents", {"email": "hal@example.com", "password": PASSWORD})
    b = browser()
    await b.sign_in("hal@example.com")
    stolen = b.cookie("gw_session")
    status, _, _ = await b.call("DELETE", "/api/v1/session", csrf=False)
    assert status == 403, "signing out needs the CSRF token too"
    status, _, resp = await b.call("DELETE", "/api/v1/session")
    assert status == 204 and b.cookie("gw_session") is None
    async with http.get(f"{url}/api/v1/me", cookies={"gw_session": stolen}) as resp:
        assert resp.status == 401, "a copied cookie dies with the session"


async def test_deactivation_ends_sessions_and_reactivation_does_not_revive_them(console, pool):
    url, http, browser = console
    agent = await admin(http, url, "POST", "/api/v1/agents", {"email": "ivy@example.com", "password": PASSWORD})
    b = browser()
    await b.sign_in("ivy@example.com")
    assert (await b.call("GET", "/api/v1/me"))[0] == 200
    await admin(http, url, "PATCH", f"/api/v1/agents/{agent['id']}", {"active": False})
    assert (await b.call("GET", "/api/v1/me"))[0] == 401
    assert (await b.sign_in("ivy@example.com"))[0] == 401, "a deactivated agent cannot sign in"
    await admin(http, url, "PATCH", f"/api/v1/agents/{agent['id']}", {"active": True})
    assert (await b.call("GET", "/api/v1/me"))[0] == 401
    assert await pool.fetchval("SELECT count(*) FROM agent_sessions WHERE ended_at IS NULL") == 0
    assert (await b.sign_in("ivy@example.com"))[0] == 200


async def test_cookie_websocket_must_come_from_our_origin(console):
    url, http, browser = console
    await admin(http, url, "POST", "/api/v1/agents", {"email": "jo@example.com", "password": PASSWORD})
    b = browser()
    await b.sign_in("jo@example.com")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await b.http.ws_connect(f"{url}/api/v1/stream", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    ws = await b.http.ws_connect(f"{url}/api/v1/stream", headers={"Origin": url})
    hello = await ws.receive_json(timeout=10)
    assert hello["type"] == "hello" and hello["role"] == "agent"
    await ws.close()


async def test_console_page_and_assets_are_served_with_a_strict_policy(console):
    url, http, _ = console
    async with http.get(f"{url}/console") as resp:
        html = await resp.text()
        assert resp.status == 200 and 'type="module"' in html
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "http" not in html.replace('http-equiv', ''), "no external URL: works offline"
    async with http.get(f"{url}/console/static/app.js") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/javascript")
    for bad in ("../settings.py", "x.py", "nope.js"):
        async with http.get(f"{url}/console/static/{bad}") as resp:
            assert resp.status == 404


async def test_customer_files_never_run_on_the_console_origin(console, pool):
    """A customer's HTML or SVG file opened from the console must not run with the agent's session."""
    url, http, browser = console
    cid = await unassigned_conversation(pool)
    files = [("page.html", "text/html", b"<script>fetch('/api/v1/tokens')</script>"),
             ("logo.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
             (None, "text/html; charset=utf-8", b"<script>alert(2)</script>"),
             ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n")]
    atts = []
    for i, (name, ctype, data) in enumerate(files):
        await pool.execute("INSERT INTO blobs (ref, content_type, size, data) VALUES ($1, $2, $3, $4)",
                           f"sha256:test{i}", ctype, len(data), data)
        atts.append({"url": f"https://media.example/{i}", "content_type": ctype, "content_ref": f"sha256:test{i}",
                     **({"filename": name} if name else {})})
    mid = await pool.fetchval(
        """INSERT INTO messages (conversation_id, seq, direction, channel, body, content, author_type)
           VALUES ($1, 1, 'in', 'email', 'files', $2, 'customer') RETURNING id""", cid, {"attachments": atts})
    await admin(http, url, "POST", "/api/v1/agents", {"email": "kit@example.com", "password": PASSWORD})
    b = browser()
    await b.sign_in("kit@example.com")
    seen = []
    for i in range(len(files)):
        status, _, resp = await b.call("GET", f"/api/v1/conversations/{cid}/messages/{mid}/attachments/{i}")
        assert status == 200
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"].startswith("sandbox")
        seen.append((resp.headers["Content-Disposition"].split(";")[0], resp.content_type))
    assert seen == [("attachment", "text/html"), ("attachment", "image/svg+xml"), ("attachment", "text/html"),
                    ("inline", "image/png")]
