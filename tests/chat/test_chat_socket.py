"""The chat socket end to end: real gateway, real PostgreSQL and Redis, aiohttp WebSocket clients."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import redis.asyncio as aioredis
from chat_support import chat_gateway, new_session, open_tab

from gateway.channels.webchat import socket as chat_socket
from gateway.channels.webchat.hub import visitor_channel
from gateway.channels.webchat.sender import WebchatSender
from gateway.channels.webchat.tokens import issue_session
from gateway.devtools.testing import free_port, wait_for
from gateway.domain import thread
from gateway.domain.types import Button, Channel, OutgoingMessage, SendOutcome
from gateway.inbox import actions
from gateway.infra import realtime
from gateway.pipeline.queue import Keys

pytestmark = pytest.mark.usefixtures("clean")


async def _reply_as_agent(rt, conversation_id: int, text: str, buttons=()) -> int:
    """What the agents' inbox does: an outbound message in the thread, then the realtime event."""
    effects = thread.Effects()
    async with rt.pool.acquire() as conn, conn.transaction():
        message_id = await thread.queue_outbound(conn, conversation_id, text=text, author_type="agent",
                                                 buttons=tuple(buttons), effects=effects)
    await rt.publish_effects(effects)
    return message_id


async def test_message_ack_bot_reply_and_receipts(chat_settings, http, pool):
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base)
        assert s["visitor_id"].startswith("v_") and s["conversation_id"] is None
        tab = await open_tab(http, base, s["token"])
        assert tab.ready == {"type": "ready", "visitor_id": s["visitor_id"], "conversation_id": None,
                             "last_seq": 0, "identified": False}

        await tab.say("m1", "hello there")
        ack = await tab.next("ack")
        assert ack["client_msg_id"] == "m1" and ack["seq"] == 1 and ack["duplicate"] is False
        mine = await tab.next("message", seq=1)
        assert mine["direction"] == "in" and mine["text"] == "hello there" and mine["client_msg_id"] == "m1"
        reply = await tab.next("message", direction="out")
        assert reply["text"] == "You said: hello there" and reply["author_type"] == "bot"
        assert reply["seq"] > 1

        # this tab got it: delivered (the WebchatSender's "sent" cannot move it back); then read
        async def status():
            return await pool.fetchval("SELECT status FROM messages WHERE id = $1", reply["message_id"])
        await wait_for(lambda: _eq(status, "delivered"), message="reply not marked delivered")
        await wait_for(lambda: _eq(lambda: pool.fetchval(
            "SELECT state FROM outbox WHERE message_id = $1", reply["message_id"]), "done"))
        assert await status() == "delivered"
        assert await pool.fetchval("SELECT provider_message_id FROM messages WHERE id = $1",
                                   reply["message_id"]) == f"chat-{reply['message_id']}"
        await tab.send(type="read", seq=reply["seq"])
        await wait_for(lambda: _eq(status, "read"), message="reply not marked read")

        await tab.send(type="ping")
        await tab.next("pong")
        await tab.close()


async def _eq(fn, value):
    return (await fn()) == value


async def test_duplicate_client_msg_id_is_stored_once(chat_settings, http, pool):
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base)
        tab = await open_tab(http, base, s["token"])
        await tab.say("same-id", "only once")
        first = await tab.next("ack")
        await tab.next("message", direction="out")
        await tab.say("same-id", "only once")          # the widget resending after a reconnect
        second = await tab.next("ack")
        assert second == {**first, "duplicate": True}
        # a second tab resending it after a reload: the same answer
        tab2 = await open_tab(http, base, s["token"], last_seq=10**6)
        await tab2.say("same-id", "only once")
        assert (await tab2.next("ack"))["duplicate"] is True
        await tab.quiet(0.5)
        rows = await pool.fetch("SELECT direction, body FROM messages ORDER BY seq")
        assert [(r["direction"], r["body"]) for r in rows] == [
            ("in", "only once"), ("out", "You said: only once")]
        await tab.close()
        await tab2.close()


async def test_resume_after_disconnect_gets_only_what_was_missed(chat_settings, http, pool):
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base)
        tab = await open_tab(http, base, s["token"])
        await tab.say("a1", "first")
        reply = await tab.next("message", direction="out")
        cid = (await pool.fetchrow("SELECT id FROM conversations"))["id"]
        last_seen = reply["seq"]
        await tab.close()

        # while the visitor is away: an agent answers twice (one with quick replies)
        await _reply_as_agent(rt, cid, "Are you still there?")
        await _reply_as_agent(rt, cid, "Pick one", buttons=[Button("yes", "Yes"), Button("no", "No")])

        tab = await open_tab(http, base, s["token"], last_seq=last_seen, conversation_id=cid)
        assert tab.ready["conversation_id"] == cid
        missed = [await tab.next("message"), await tab.next("message")]
        assert [m["text"] for m in missed] == ["Are you still there?", "Pick one"]
        assert [m["seq"] for m in missed] == [last_seen + 1, last_seen + 2]
        assert missed[1]["buttons"] == [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]
        assert not [f for f in await tab.quiet(0.4) if f["type"] == "message"]   # nothing old again

        # a quick-reply click is a message carrying the button id
        await tab.say("a2", "Yes", reply_id="yes", reply_title="Yes")
        mine = await tab.next("message", client_msg_id="a2")
        assert mine["reply_id"] == "yes"
        content = await pool.fetchval("SELECT content FROM messages WHERE seq = $1", mine["seq"])
        assert content["reply_id"] == "yes"

        # a fresh page (last_seq 0) gets the whole history, in order
        fresh = await open_tab(http, base, s["token"])
        texts = [(await fresh.next("message"))["text"] for _ in range(6)]
        assert texts == ["first", "You said: first", "Are you still there?", "Pick one", "Yes", "You said: Yes"]
        await tab.close()
        await fresh.close()


async def test_every_tab_of_the_visitor_gets_messages_and_replies(chat_settings, http):
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base)
        tab1 = await open_tab(http, base, s["token"])
        tab2 = await open_tab(http, base, s["token"])   # opened before any thread exists
        await tab1.say("x1", "from tab one")
        for tab in (tab1, tab2):
            assert (await tab.next("message", direction="in"))["text"] == "from tab one"
            assert (await tab.next("message", direction="out"))["text"] == "You said: from tab one"
        other = await open_tab(http, base, (await new_session(http, base))["token"])
        assert not [f for f in await other.quiet(0.4) if f["type"] == "message"]   # another visitor: nothing
        for tab in (tab1, tab2, other):
            await tab.close()


async def test_typing_both_ways(chat_settings, http, redis_client):
    async with chat_gateway(chat_settings.with_(default_handler="agent")) as (rt, base):
        s = await new_session(http, base)
        tab = await open_tab(http, base, s["token"])
        await tab.say("t1", "need a human")
        await tab.next("ack")
        cid = await rt.pool.fetchval("SELECT id FROM conversations")
        await tab.send(type="typing", state="on")
        key = rt.keys.typing(cid, "visitor")
        await wait_for(lambda: redis_client.exists(key), message="visitor typing not stored")
        assert 0 < await redis_client.ttl(key) <= chat_socket.TYPING_TTL
        await tab.send(type="typing", state="off")
        await wait_for(lambda: _not(redis_client.exists(key)))

        # an agent types in the inbox (the API, as the console does): the tab shows it, then its end
        for active, state in ((True, "on"), (False, "off")):
            async with http.post(f"{base}/api/v1/conversations/{cid}/typing", json={"typing": active},
                                 headers={"Authorization": f"Bearer {chat_settings.admin_token}"}) as resp:
                assert resp.status == 200
            assert await tab.next("typing") == {"type": "typing", "who": "agent", "state": state,
                                                "ttl": actions.TYPING_TTL}
        await tab.close()


async def _not(coro):
    return not await coro


@pytest.mark.parametrize("token, code", [
    ("garbage", "invalid_token"),
    ("v1.eyJ2aWQiOiJ2X3giLCJleHAiOjk5OTk5OTk5OTl9.forged", "invalid_token"),
    (None, "expired_token"),
    ("wrong-secret", "invalid_token"),
])
async def test_bad_tokens_get_an_error_frame_and_4401(chat_settings, http, token, code):
    if token is None:
        token = issue_session(chat_settings.secret_key, ttl=-1).token
    elif token == "wrong-secret":
        token = issue_session("another-installation").token
    async with chat_gateway(chat_settings) as (rt, base):
        for query in (False, True):   # first-frame hello, and ?token=
            url = f"{base.replace('http', 'ws', 1)}/chat/ws" + (f"?token={token}" if query else "")
            async with http.ws_connect(url) as ws:
                if not query:
                    await ws.send_str(json.dumps({"type": "hello", "token": token}))
                frame = await ws.receive_json(timeout=5)
                assert frame["type"] == "error" and frame["code"] == code
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4401


async def test_no_hello_in_time_closes_4408(chat_settings, http, monkeypatch):
    monkeypatch.setattr(chat_socket, "AUTH_TIMEOUT", 0.3)
    async with chat_gateway(chat_settings) as (rt, base):
        async with http.ws_connect(f"{base.replace('http', 'ws', 1)}/chat/ws") as ws:
            frame = await ws.receive_json(timeout=5)
            assert frame["code"] == "auth_timeout"
            await ws.receive(timeout=5)
            assert ws.close_code == 4408


async def test_oversized_and_malformed_frames_get_error_frames(chat_settings, http, pool):
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base)
        tab = await open_tab(http, base, s["token"])
        await tab.say("big", "x" * 5000)
        err = await tab.next("error")
        assert err["code"] == "too_large" and err["client_msg_id"] == "big"
        await tab.ws.send_str(json.dumps({"type": "message", "client_msg_id": "huge", "text": "y" * 30_000}))
        assert (await tab.next("error"))["code"] == "too_large"
        await tab.ws.send_str("not json")
        assert (await tab.next("error"))["code"] == "bad_frame"
        await tab.send(type="warp")
        assert (await tab.next("error"))["code"] == "bad_frame"
        await tab.send(type="message", client_msg_id="has spaces!", text="hi")
        assert (await tab.next("error"))["code"] == "invalid_field"
        await tab.ws.send_bytes(b"\x00\x01")
        assert (await tab.next("error"))["code"] == "bad_frame"
        # the socket still works, and none of that was stored
        await tab.say("ok", "still here")
        assert (await tab.next("ack"))["seq"] == 1
        assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == 1
        # beyond the socket's hard limit the connection is closed with 1009 (message too big)
        await tab.ws.send_str("z" * 100_000)
        while (await tab.ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
            pass   # the bot's reply to "still here" may come first
        assert tab.ws.close_code == 1009
        await tab.close()


async def test_rate_limit_answers_with_error_frames(chat_settings, http, pool):
    async with chat_gateway(chat_settings.with_(default_handler="agent")) as (rt, base):
        s = await new_session(http, base)
        tab = await open_tab(http, base, s["token"])
        burst = 40  # well past what the bucket refills on a slow machine, under MAX_RATE_VIOLATIONS
        for i in range(burst):
            await tab.say(f"burst-{i}", f"message {i}")
        acks, limited = set(), set()
        while len(acks) + len(limited) < burst:
            frame = await tab.next()
            if frame["type"] == "ack":
                acks.add(frame["client_msg_id"])
            elif frame["type"] == "error":
                assert frame["code"] == "rate_limited" and frame["retry_after"] > 0
                limited.add(frame["client_msg_id"])
        assert chat_socket.MESSAGE_BURST <= len(acks) < burst and limited
        assert await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'") == len(acks)
        await asyncio.sleep(1.0)                        # the bucket refills
        await tab.say("later", "after a pause")
        assert (await tab.next("ack", client_msg_id="later"))["duplicate"] is False
        await tab.close()


async def test_origin_allow_list(chat_settings, http):
    async with chat_gateway(chat_settings) as (rt, base):
        token = (await new_session(http, base))["token"]
        tab = await open_tab(http, base, token, origin="http://localhost:3000")   # a developer's page
        await tab.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await open_tab(http, base, token, origin="https://evil.example")
        assert exc.value.status == 403
        async with http.post(f"{base}/chat/session", json={}, headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "origin_not_allowed"
    allowed = chat_settings.with_(chat_allowed_origins=("https://shop.example",))
    async with chat_gateway(allowed) as (rt, base):
        async with http.options(f"{base}/chat/session", headers={"Origin": "https://shop.example"}) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        async with http.post(f"{base}/chat/session", json={}, headers={"Origin": "https://shop.example"}) as r:
            assert r.status == 201 and r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        tab = await open_tab(http, base, token, origin="https://shop.example")
        await tab.close()
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await open_tab(http, base, token, origin="http://localhost:3000")


async def test_session_renewal_keeps_the_visitor(chat_settings, http):
    async with chat_gateway(chat_settings) as (rt, base):
        first = await new_session(http, base)
        again = await new_session(http, base, token=first["token"])
        assert again["visitor_id"] == first["visitor_id"] and "previous" not in again
        expired = issue_session(chat_settings.secret_key, first["visitor_id"], ttl=-5).token
        fresh = await new_session(http, base, token=expired)
        assert fresh["visitor_id"] != first["visitor_id"] and fresh["previous"] == "expired_token"


async def test_widget_and_demo_page_are_served(chat_settings, http):
    async with chat_gateway(chat_settings) as (rt, base):
        async with http.get(f"{base}/chat/widget.js") as r:
            assert r.status == 200 and r.content_type == "application/javascript"
            assert "window.GatewayChat" in await r.text()
        async with http.get(f"{base}/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert '<script src="/chat/widget.js"' in await r.text()


async def test_dead_socket_is_closed_and_forgotten(chat_settings, http, redis_client, monkeypatch):
    monkeypatch.setattr(chat_socket, "HEARTBEAT", 0.3)
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base)
        channel = visitor_channel(rt.keys, s["visitor_id"])

        async def subscribers():
            return dict(await redis_client.pubsub_numsub(channel))[channel.encode()]
        # a client that never answers the server's pings (a laptop that went to sleep)
        ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/chat/ws?token={s['token']}", autoping=False)
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        assert await subscribers() == 1
        while (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.TEXT):
            pass
        await wait_for(lambda: _eq(subscribers, 0), message="dead socket still subscribed")
        await ws.close()


async def test_agent_read_receipt_reaches_the_tab(chat_settings, http):
    async with chat_gateway(chat_settings) as (rt, base):
        tab = await open_tab(http, base, (await new_session(http, base))["token"])
        await tab.say("r1", "hi")
        ack = await tab.next("ack")
        cid = await rt.pool.fetchval("SELECT id FROM conversations")
        await realtime.publish(rt.redis, rt.keys, [("conversation.read", {"conversation_id": cid,
                                                                            "seq": ack["seq"], "reader": "agent"})])
        assert await tab.next("read") == {"type": "read", "seq": ack["seq"], "who": "agent"}
        await tab.close()


async def test_webchat_sender_publishes_and_reports_redis_outages(chat_settings, redis_client):
    keys = Keys(chat_settings.redis_prefix)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.chat_channel(7))
    msg = OutgoingMessage(message_id=41, channel=Channel.WEBCHAT, to="v_x", text="Hi",
                          buttons=(Button("a", "A"),), metadata={"conversation_id": 7, "seq": 3})
    result = await WebchatSender(redis_client, keys).send(msg)
    assert (result.outcome, result.provider_message_id, result.status) == (SendOutcome.SENT, "chat-41", "sent")
    got = None
    while got is None:
        got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert json.loads(got["data"]) == {"type": "chat.outbound", "conversation_id": 7, "message_id": 41, "seq": 3,
                                       "visitor_id": "v_x", "text": "Hi", "buttons": [{"id": "a", "title": "A"}]}
    await pubsub.aclose()
    down = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    assert (await WebchatSender(down, keys).send(msg)).outcome is SendOutcome.RETRY
    await down.aclose()
