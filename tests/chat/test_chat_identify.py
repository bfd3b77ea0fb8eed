"""Identifying a chat visitor: one contact, one thread, whatever the channel.

The first test delivers a real email over SMTP; the others hand a normalized
Inbound(channel=EMAIL) to gateway.pipeline.intake.accept, which is what the email adapter produces.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from chat_support import chat_gateway, new_session, open_tab

from gateway.channels.webchat.identify import merge_contacts
from gateway.channels.webchat.tokens import sign_identity
from gateway.devtools.testing import wait_for
from gateway.domain import thread
from gateway.domain.types import Channel, Inbound
from gateway.pipeline import intake

IDENTITY_SECRET = "identity-test-secret"  # as in tests/chat/conftest.py

pytestmark = pytest.mark.usefixtures("clean")


def identity(**claims) -> str:
    return sign_identity(IDENTITY_SECRET, {"exp": int(time.time()) + 600, **claims})


def email(message_id: str, sender: str, text: str) -> Inbound:
    return Inbound(channel=Channel.EMAIL, provider="smtp", provider_message_id=message_id, sender=sender,
                   text=text, subject="Order 1042", recipient="support@shop.example")


async def thread_of(pool, conversation_id: int) -> list[tuple]:
    rows = await pool.fetch(
        """SELECT seq, direction, channel, body FROM messages
           WHERE conversation_id = $1 AND kind = 'message' ORDER BY seq""", conversation_id)
    return [(r["direction"], r["channel"], r["body"]) for r in rows]


async def wait_replies(pool, n: int) -> None:
    await wait_for(lambda: _count_out(pool, n), message=f"expected {n} bot replies")


async def _count_out(pool, n):
    return await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'out'") >= n


async def test_chat_then_identify_by_email_then_email_is_one_thread(chat_settings, http, pool):
    """Chat, identify with an email address, then a real email over SMTP: one thread, in order."""
    import asyncio
    import smtplib
    from email.message import EmailMessage

    from gateway.channels.email.intake import start_smtp_listener
    from gateway.devtools.fakes.smtp import FakeSmtpRelay
    from gateway.devtools.testing import free_port

    async with FakeSmtpRelay(hostname="127.0.0.1") as relay:
        settings = chat_settings.with_(smtp_host="127.0.0.1", smtp_port=relay.port, smtp_tls="none",
                                       email_from="support@shop.example", smtp_listen_port=free_port(),
                                       email_trusted_authserv_ids=("mx.shop.example",))
        async with chat_gateway(settings) as (rt, base):
            stop = await start_smtp_listener(rt)
            s = await new_session(http, base)
            tab = await open_tab(http, base, s["token"])
            await tab.say("c1", "Where is my order?")
            await tab.next("message", direction="out")

            await tab.send(type="identify", token=identity(email="Ann@Example.com", name="Ann"))
            done = await tab.next("identified")
            cid = done["conversation_id"]
            contact_id = await pool.fetchval("SELECT contact_id FROM conversations WHERE id = $1", cid)
            identities = {(r["kind"], r["address"]) for r in await pool.fetch(
                "SELECT kind, address FROM identities WHERE contact_id = $1", contact_id)}
            assert identities == {("chat", s["visitor_id"]), ("email", "ann@example.com")}

            # later the same customer writes an email (a real SMTP delivery): same thread, after the chat
            mail = EmailMessage()
            mail["From"], mail["To"], mail["Subject"] = "Ann <ann@example.com>", "support@shop.example", "Order 1042"
            mail["Message-ID"] = "<m1@example.com>"
            # what the shop's MX relay in front of the listener adds (the From is authenticated)
            mail["Authentication-Results"] = "mx.shop.example; dmarc=pass header.from=example.com"
            mail.set_content("Any news?")

            def send():
                with smtplib.SMTP("127.0.0.1", settings.smtp_listen_port, timeout=10) as smtp:
                    smtp.send_message(mail)
            await asyncio.to_thread(send)
            await wait_replies(pool, 2)
            assert await thread_of(pool, cid) == [
                ("in", "webchat", "Where is my order?"), ("out", "webchat", "You said: Where is my order?"),
                ("in", "email", "Any news?"), ("out", "email", "You said: Any news?")]
            # and the open tab shows it too (the thread is one, the channel is labelled)
            seen = await tab.next("message", channel="email", direction="in")
            assert seen["text"] == "Any news?"
            assert await pool.fetchval("SELECT count(*) FROM contacts") == 1
            await tab.close()
            await stop()

        async def mailed():
            return len(relay.messages) == 1
        await wait_for(mailed)
    assert relay.messages[0].message["In-Reply-To"] == "<m1@example.com>"


async def test_identify_merges_the_anonymous_chat_into_the_known_contacts_thread(chat_settings, http, pool):
    async with chat_gateway(chat_settings) as (rt, base):
        # a known customer: wrote an email yesterday
        known = await intake.accept(rt, email("<old@example.com>", "bob@example.com", "Hi from email"))
        await wait_replies(pool, 1)
        await pool.execute("UPDATE messages SET created_at = created_at - interval '1 day'")

        s = await new_session(http, base)
        tab = await open_tab(http, base, s["token"])
        other_tab = await open_tab(http, base, s["token"])
        await tab.say("b1", "Hello from chat")
        await tab.next("message", direction="out")
        chat_cid = await pool.fetchval(
            "SELECT c.id FROM conversations c JOIN identities i ON i.contact_id = c.contact_id "
            "WHERE i.kind = 'chat'")
        assert chat_cid != known.conversation_id

        await tab.send(type="identify", token=identity(email="bob@example.com"))
        assert (await tab.next("identified"))["conversation_id"] == known.conversation_id
        for t in (tab, other_tab):   # every tab drops the old numbering and gets the merged thread
            assert (await t.next("reset"))["conversation_id"] == known.conversation_id
            texts = [(await t.next("message"))["text"] for _ in range(4)]
            assert texts == ["Hi from email", "You said: Hi from email", "Hello from chat",
                             "You said: Hello from chat"]

        # the chat's own thread is emptied into the known one and kept as a pointer to it
        assert await pool.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", chat_cid) == 0
        assert (await pool.fetchval("SELECT flow_data FROM conversations WHERE id = $1", chat_cid))[
            "merged_into"] == known.conversation_id
        rows = await pool.fetch("SELECT seq, kind FROM messages WHERE conversation_id = $1 ORDER BY seq",
                                known.conversation_id)
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        assert rows[-1]["kind"] == "event"          # "Chat visitor identified as bob@example.com"
        assert await pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1",
                                   known.conversation_id) == len(rows)
        assert await pool.fetchval("SELECT merged_into FROM contacts WHERE id <> $1",
                                   known.contact_id) == known.contact_id

        # the thread goes on: chat and email alike
        await tab.say("b2", "Still there?")
        ack = await tab.next("ack", client_msg_id="b2")
        assert ack["seq"] == len(rows) + 1
        await tab.close()
        await other_tab.close()


async def test_identity_errors_are_error_frames(chat_settings, http):
    async with chat_gateway(chat_settings) as (rt, base):
        tab = await open_tab(http, base, (await new_session(http, base))["token"])
        forged = sign_identity("not-the-secret", {"email": "x@example.com", "exp": int(time.time()) + 60})
        for token, code in ((forged, "identity_invalid"),
                            (identity(email="x@example.com", exp=int(time.time()) - 1), "identity_expired"),
                            (identity(name="nobody"), "identity_invalid"),
                            (identity(email="not an email"), "identity_invalid")):
            await tab.send(type="identify", token=token)
            assert (await tab.next("error"))["code"] == code
        await tab.close()
    async with chat_gateway(chat_settings.with_(chat_identity_secret=None)) as (rt, base):
        tab = await open_tab(http, base, (await new_session(http, base))["token"])
        await tab.send(type="identify", token=identity(email="x@example.com"))
        assert (await tab.next("error"))["code"] == "identity_unavailable"
        await tab.close()


async def test_session_with_identity_links_before_the_first_message(chat_settings, http, pool):
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base, identity=identity(external_id="cust-77", phone="+1 415 555 0100"))
        assert s["identified"] is True and s["conversation_id"] is None
        tab = await open_tab(http, base, s["token"])
        assert tab.ready["identified"] is True
        await tab.say("p1", "hi")
        await tab.next("message", direction="out")
        # an SMS from the same phone number is the same thread
        sms = Inbound(channel=Channel.SMS, provider="twilio", provider_message_id="SM1", sender="+14155550100",
                      text="texting now")
        result = await intake.accept(rt, sms)
        assert await pool.fetchval("SELECT count(*) FROM conversations") == 1
        assert result.conversation_id == await pool.fetchval("SELECT id FROM conversations")
        async with http.post(f"{base}/chat/session", json={"identity": "forged.00"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "identity_invalid"
        await tab.close()


async def test_a_second_person_on_the_same_browser_does_not_get_the_first_ones_history(chat_settings, http, pool):
    async with chat_gateway(chat_settings) as (rt, base):
        s = await new_session(http, base)
        tab = await open_tab(http, base, s["token"])
        await tab.send(type="identify", token=identity(email="first@example.com"))
        await tab.next("identified")
        await tab.say("f1", "first person's secret")
        await tab.next("message", direction="out")
        first_cid = await pool.fetchval("SELECT id FROM conversations")

        await tab.send(type="identify", token=identity(email="second@example.com"))
        done = await tab.next("identified")
        assert done["conversation_id"] is None          # the second person has no thread yet
        await tab.next("reset")
        await tab.say("s1", "second person here")
        ack = await tab.next("ack", client_msg_id="s1")
        assert ack["seq"] == 1
        # first person's thread is untouched and not shown after the reset
        assert await thread_of(pool, first_cid) == [
            ("in", "webchat", "first person's secret"), ("out", "webchat", "You said: first person's secret")]
        fresh = await open_tab(http, base, s["token"])
        history = [(await fresh.next("message"))["text"] for _ in range(2)]
        assert history == ["second person here", "You said: second person here"]
        assert "first person's secret" not in [f.get("text") for f in fresh.seen]
        await tab.close()
        await fresh.close()


async def test_merge_contacts_resequences_both_threads_in_time_order(pool, clean):
    now = datetime.now(timezone.utc)

    async def contact_with_thread(name: str, times: list[int]) -> tuple[int, int]:
        contact = await pool.fetchval("INSERT INTO contacts (name) VALUES ($1) RETURNING id", name)
        await pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'api', $2)",
                           contact, name)
        conv = await pool.fetchval("INSERT INTO conversations (contact_id) VALUES ($1) RETURNING id", contact)
        for minute in times:
            async with pool.acquire() as conn:
                mid, _ = await thread.append(conn, conv, direction="in", channel="api",
                                             body=f"{name}@{minute}", author_type="customer")
                await conn.execute("UPDATE messages SET created_at = $2 WHERE id = $1", mid,
                                   now + timedelta(minutes=minute))
        return contact, conv

    a, a_conv = await contact_with_thread("alice", [1, 4, 6])
    b, b_conv = await contact_with_thread("bob", [2, 3, 5])
    effects = thread.Effects()
    async with pool.acquire() as conn, conn.transaction():
        target = await merge_contacts(conn, b, a, effects=effects)
    assert target == a_conv
    rows = await pool.fetch("SELECT seq, body, kind FROM messages WHERE conversation_id = $1 ORDER BY seq", a_conv)
    assert [r["body"] for r in rows if r["kind"] == "message"] == [
        "alice@1", "bob@2", "bob@3", "alice@4", "bob@5", "alice@6"]
    assert [r["seq"] for r in rows] == list(range(1, 8))
    assert await pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1", a_conv) == 7
    assert await pool.fetchval("SELECT count(*) FROM identities WHERE contact_id = $1", a) == 2
    assert {e[1]["conversation_id"] for e in effects.events if e[0] == "conversation.merged"} == {a_conv, b_conv}


async def test_a_token_naming_two_contacts_is_refused_or_merged_when_allowed(chat_settings, pool):
    """The phone belongs to one contact and the email to another: never silently one of them."""
    import aiohttp

    async with pool.acquire() as conn:
        for ext, kind, address in (("by-phone", "phone", "+14155550161"), ("by-mail", "email", "lu@example.com")):
            cid = await conn.fetchval("INSERT INTO contacts (name) VALUES ($1) RETURNING id", ext)
            await conn.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, $2, $3)",
                               cid, kind, address)
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM contacts ORDER BY id")]
    token = identity(phone="+14155550161", email="lu@example.com")
    async with chat_gateway(chat_settings, roles=("http",)) as (rt, base), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/chat/session", json={"identity": token}) as resp:
            assert resp.status == 409
            err = (await resp.json())["error"]
        assert err["code"] == "identity_conflict" and all(str(i) in err["message"] for i in ids)
        assert await pool.fetchval("SELECT count(*) FROM identities WHERE kind = 'chat'") == 0
        assert await pool.fetchval("SELECT count(*) FROM contacts WHERE merged_into IS NOT NULL") == 0
    async with chat_gateway(chat_settings.with_(chat_identity_conflict="merge"), roles=("http",)) as (rt, base), \
            aiohttp.ClientSession() as http:
        session = await new_session(http, base, identity=token)
        assert session["identified"]
    rows = {r["id"]: r["merged_into"] for r in await pool.fetch("SELECT id, merged_into FROM contacts")}
    assert rows == {ids[0]: None, ids[1]: ids[0]}
    owners = {r["contact_id"] for r in await pool.fetch("SELECT contact_id FROM identities")}
    assert owners == {ids[0]}


def test_the_readme_token_examples_make_tokens_we_accept(tmp_path):
    """The Python and JavaScript snippets in README.md, run as written, make valid identity tokens."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from gateway.channels.webchat.tokens import verify_identity

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    python = re.search(r"```python\n# identity-token-python\n(.*?)```", readme, re.S).group(1)
    scope: dict = {}
    exec(python, scope)
    ref = verify_identity(IDENTITY_SECRET, scope["chat_identity_token"](IDENTITY_SECRET, email="Ann@Example.com",
                                                                        phone="+14155550100", name="Ann"))
    assert (ref.email, ref.phone, ref.name) == ("ann@example.com", "+14155550100", "Ann")
    if not shutil.which("node"):
        pytest.skip("node is not installed")
    js = re.search(r"```javascript\n// identity-token-javascript \(Node.js\)\n(.*?)```", readme, re.S).group(1)
    script = tmp_path / "token.js"
    script.write_text(js + f'\nprocess.stdout.write(chatIdentityToken("{IDENTITY_SECRET}", {{ externalId: "crm-9" }}));\n')
    token = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, check=True).stdout
    assert verify_identity(IDENTITY_SECRET, token).external_id == "crm-9"
