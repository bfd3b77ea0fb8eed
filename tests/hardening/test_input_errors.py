"""Any input is a 4xx, never a 500 (issue 11, item 2): the cases of the issue, one by one, through
the real HTTP server and real WebSockets."""
from __future__ import annotations

import json

import aiohttp
import pytest

from gateway.devtools.testing import running_gateway

DEEP = "[" * 5000 + "]" * 5000
NESTED_40 = json.dumps(json.loads("[" * 40 + "]" * 40))


@pytest.fixture
async def gateway(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, base):
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {rt.settings.admin_token}"}) as http:
            yield rt, base, http


async def _post(http, url: str, raw: str | bytes) -> tuple[int, dict]:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json(content_type=None)


def _inbound(contact: str, text: str = '"hi"', cmid: str = '"m1"') -> str:
    return f'{{"client_message_id": {cmid}, "contact": {contact}, "text": {text}}}'


@pytest.mark.parametrize("contact_id", ["1e30", "Infinity", "NaN", "1.9", '"1"', str(2**64), "-5", "true",
                                        '"١"', "[1]"])
async def test_contact_id_that_is_not_an_integer_id_is_400(gateway, pool, contact_id):
    _, base, http = gateway
    status, body = await _post(http, f"{base}/api/v1/inbound", _inbound(f'{{"contact_id": {contact_id}}}'))
    assert status == 400, body
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0


@pytest.mark.parametrize("raw", [DEEP, "[" * 40 + "]" * 40,
                                 _inbound('{"external_id": "a"}', text='"x\\u0000y"'),
                                 _inbound('{"external_id": "a"}', text='"\\ud800"'),
                                 _inbound('{"external_id": "a\\u0000"}'),
                                 _inbound('{"external_id": "a"}', cmid='"\\udfff"'),
                                 '{"client_message_id": "m", "contact": {"external_id": "a"}, "text": "hi", "n": 1e400}'])
async def test_nested_nul_surrogate_and_overflowing_bodies_are_400(gateway, pool, raw):
    _, base, http = gateway
    status, body = await _post(http, f"{base}/api/v1/inbound", raw)
    assert status == 400, body
    assert body["error"]["code"] in ("invalid_json", "invalid_input")
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0


async def test_chat_session_body_is_checked_too(gateway):
    _, base, http = gateway
    for raw in (DEEP, '{"token": ["x"]}', '{"identity": {"a": 1}}', '{"token": "\\u0000"}'):
        status, body = await _post(http, f"{base}/chat/session", raw)
        assert status == 400, (raw[:20], body)


async def test_identity_kind_of_the_wrong_type_is_400_and_creates_no_contact(gateway, pool):
    _, base, http = gateway
    for kind in ('{"wa_id": ["1"]}', '["phone"]', "7", "null"):
        raw = f'{{"name": "x", "identities": [{{"kind": {kind}, "address": "+14155550100"}}]}}'
        status, body = await _post(http, f"{base}/api/v1/contacts", raw)
        assert status == 400 and body["error"]["field"].endswith("kind"), (kind, body)
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0


async def test_external_ids_are_refused_when_too_long_never_cut(gateway, pool):
    _, base, http = gateway
    prefix = "e" * 200
    for i, suffix in enumerate(("-one", "-two")):
        status, body = await _post(http, f"{base}/api/v1/inbound",
                                   _inbound(json.dumps({"external_id": prefix + suffix}), cmid=f'"m{i}"'))
        assert status == 201, body
    assert await pool.fetchval("SELECT count(DISTINCT c.contact_id) FROM messages m JOIN conversations c ON c.id = m.conversation_id") == 2
    status, body = await _post(http, f"{base}/api/v1/inbound",
                               _inbound(json.dumps({"external_id": "x" * 600}), cmid='"m9"'))
    assert status == 400 and "at most" in body["error"]["message"]


async def test_nan_attributes_and_other_scripts_digits_as_ids(gateway, pool):
    _, base, http = gateway
    status, _ = await _post(http, f"{base}/api/v1/inbound", _inbound('{"external_id": "c1"}'))
    assert status == 201
    contact_id = await pool.fetchval("SELECT id FROM contacts")
    async with http.patch(f"{base}/api/v1/contacts/{contact_id}", data='{"attributes": {"score": NaN}}',
                          headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    for path in (f"/api/v1/contacts/{chr(0x0660 + contact_id)}", "/api/v1/contacts/%EF%BC%91",   # ١, fullwidth 1
                 "/api/v1/contacts/99999999999999999999"):
        async with http.get(base + path) as resp:
            assert resp.status == 404, path
    for query in ("contact_id=\u0661", "contact_id=1&limit=\u0661\u0660"):
        async with http.get(f"{base}/api/v1/events?{query}") as resp:
            assert resp.status == 400, query
    async with http.get(f"{base}/api/v1/conversations?team_id=\u0661") as resp:
        assert resp.status == 400
    status, _ = await _post(http, f"{base}/api/v1/inbound", json.dumps(
        {"client_message_id": "att", "contact": {"external_id": "c1"}, "text": "see",
         "attachments": [{"url": "https://example.com/a.png", "content_type": "image/png"}]}))
    assert status == 201
    row = await pool.fetchrow("SELECT id, conversation_id FROM messages WHERE provider_message_id = 'att'")
    for message_id, index in ((chr(0x0660 + row["id"]), "0"), (str(row["id"]), "\u0660"),
                              ("99999999999999999999", "0")):
        async with http.get(f"{base}/api/v1/conversations/{row['conversation_id']}/messages/{message_id}"
                            f"/attachments/{index}") as resp:
            assert resp.status == 404, (message_id, index, resp.status)


async def test_chat_and_stream_frames_never_kill_the_socket(gateway):
    """Deeply nested frames, NUL and surrogates get an error frame; the socket answers the next ping."""
    _, base, http = gateway
    async with http.post(f"{base}/chat/session", json={}) as resp:
        token = (await resp.json())["token"]
    ws_base = base.replace("http", "ws", 1)
    bad_frames = ["[" * 6000 + "]" * 6000, NESTED_40, '{"type": "message", "client_msg_id": "a", "text": NaN}',
                  '{"type": "typing", "state": "\\u0000"}', '{"type": "read", "seq": 1e400}', "[]", "\"x\""]
    async with http.ws_connect(f"{ws_base}/chat/ws?token={token}") as ws:
        while (await ws.receive_json(timeout=20))["type"] != "ready":
            pass
        for frame in bad_frames:
            await ws.send_str(frame)
            reply = await ws.receive_json(timeout=20)
            assert reply["type"] == "error", (frame[:30], reply)
        await ws.send_str('{"type": "ping"}')
        assert (await ws.receive_json(timeout=20))["type"] == "pong"
    async with http.ws_connect(f"{ws_base}/api/v1/stream") as ws:
        for frame in bad_frames:
            await ws.send_str(frame)
            reply = await ws.receive_json(timeout=20)
            while reply.get("type") != "error":   # feed events may come first
                reply = await ws.receive_json(timeout=20)
        await ws.send_str('{"type": "ping"}')
        reply = await ws.receive_json(timeout=20)
        while reply.get("type") != "pong":
            reply = await ws.receive_json(timeout=20)
        assert not ws.closed
