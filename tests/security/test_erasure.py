"""Erasure leaves nothing of the person anywhere in the database (issue 11 item 17).

The person arrives through the real paths (an email with an attachment, an SMS, an event, a merge,
an agent's edits and reply); after erasure every text, jsonb, array and tsvector column of every
table is scanned for each erased value, and blobs for the attachment's bytes.
"""
from __future__ import annotations

import asyncio
import json

import aiohttp

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import running_gateway, wait_for

ADMIN = {"Authorization": "Bearer admin-test-token"}
KEY = "erase-webhook-key"
EMAIL, PHONE, NAME = "ann.erase@customer.example", "+14155550177", "Ann Erasable"
SECRET_TEXT = "my secret order 4711"
PRIVATE_FILE, SHARED_FILE = b"ANN-PRIVATE-ATTACHMENT-BYTES", b"COMMON-LOGO-BYTES"
SCANNED_TYPES = ("text", "character varying", "jsonb", "json", "ARRAY", "tsvector")


def sendgrid_form(sender: str, name: str, text: str, files: list[tuple[str, bytes]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    headers = f"From: {name} <{sender}>\nTo: support@example.com\nSubject: Order\nMessage-ID: <{sender}-1@x>\n"
    for field, value in (("headers", headers), ("from", f"{name} <{sender}>"), ("to", "support@example.com"),
                         ("subject", "Order"), ("text", text),
                         ("envelope", json.dumps({"from": sender, "to": ["support@example.com"]})),
                         ("attachments", str(len(files))),
                         ("attachment-info", json.dumps({f"attachment{i}": {"filename": n, "type": "text/plain"}
                                                         for i, (n, _) in enumerate(files, 1)}))):
        form.add_field(field, value)
    for i, (filename, data) in enumerate(files, 1):
        form.add_field(f"attachment{i}", data, filename=filename, content_type="text/plain")
    return form


async def call(http, method, url, **kw):
    async with http.request(method, url, headers=ADMIN, **kw) as resp:
        assert resp.status < 300, (method, url, resp.status, await resp.text())
        return await resp.json()


async def scan(pool, values: list[str], raw: list[bytes]) -> list[str]:
    """Every (table.column, value) where an erased value is still stored."""
    columns = await pool.fetch(
        """SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
             AND (c.data_type = ANY($1::text[]) OR c.data_type = 'bytea')""", list(SCANNED_TYPES))
    found = []
    for col in columns:
        table, column = col["table_name"], col["column_name"]
        if col["data_type"] == "bytea":
            for value in raw:
                if await pool.fetchval(f'SELECT count(*) FROM "{table}" WHERE position($1::bytea in "{column}") > 0',
                                       value):
                    found.append(f"{table}.{column}: {value!r}")
            continue
        for value in values:
            if await pool.fetchval(f'SELECT count(*) FROM "{table}" WHERE strpos(lower("{column}"::text), $1) > 0',
                                   value.lower()):
                found.append(f"{table}.{column}: {value}")
    assert len(columns) > 40, "the scan covers the whole schema"
    return found


async def test_erasure_leaves_no_trace_of_the_person_in_any_column(settings, pool, clean, redis_client):
    async with FakeTwilio() as fake:
        s = settings.with_(email_webhook_key=KEY, twilio_account_sid=fake.account_sid, twilio_auth_token=fake.auth_token,
                           twilio_from_number="+15550001111", twilio_api_base=fake.base_url)
        async with running_gateway(s) as (rt, url), aiohttp.ClientSession() as http:
            inbound = f"{url}/webhooks/email/inbound?key={KEY}"
            for sender, name, text, files in (
                    (EMAIL, NAME, SECRET_TEXT, [("order.txt", PRIVATE_FILE), ("logo.txt", SHARED_FILE)]),
                    ("bob@other.example", "Bob Other", "hello from bob", [("logo.txt", SHARED_FILE)])):
                async with http.post(inbound, data=sendgrid_form(sender, name, text, files)) as resp:
                    assert resp.status == 200, await resp.text()
            params = twilio_inbound_params(PHONE, "+15550001111", f"text me at {PHONE}, I am {NAME}")
            assert (await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params, fake.auth_token))[0] == 200
            ann = await pool.fetchval("SELECT contact_id FROM identities WHERE address = $1", EMAIL)
            sms_contact = await pool.fetchval("SELECT contact_id FROM identities WHERE address = $1", PHONE)
            bob = await pool.fetchval("SELECT contact_id FROM identities WHERE address = 'bob@other.example'")
            await call(http, "POST", f"{url}/api/v1/contacts/{ann}/merge", json={"contact_id": sms_contact})
            await call(http, "PATCH", f"{url}/api/v1/contacts/{ann}",
                       json={"name": NAME, "attributes": {"backup_email": EMAIL, "mobile": PHONE}})
            await call(http, "POST", f"{url}/api/v1/events", json={
                "event_id": f"signup:{EMAIL}", "name": "signed_up", "contact": {"email": EMAIL},
                "properties": {"phone": PHONE, "who": NAME}})
            conv = await pool.fetchval("SELECT id FROM conversations WHERE contact_id = $1", ann)
            await call(http, "POST", f"{url}/api/v1/conversations/{conv}/messages",
                       json={"text": f"Dear {NAME}, we will write to {EMAIL}", "channel": "sms"})
            await call(http, "POST", f"{url}/api/v1/conversations/{conv}/notes", json={"text": f"{NAME} called"})
            await call(http, "GET", f"{url}/api/v1/contacts/{ann}/export")

            async def settled():
                return await pool.fetchval("""SELECT bool_and(processed_at IS NOT NULL) FROM messages
                                              WHERE direction = 'in'""")
            await wait_for(settled, timeout=30)
            before = await scan(pool, [EMAIL, PHONE, NAME, SECRET_TEXT], [PRIVATE_FILE])
            erased = await call(http, "POST", f"{url}/api/v1/contacts/{ann}/erase")
            after = await scan(pool, [EMAIL, PHONE, PHONE.lstrip("+"), NAME, SECRET_TEXT], [PRIVATE_FILE])
    assert {c.split(".")[0] for c in before} >= {"messages", "identities", "contacts", "events", "blobs"}, before
    assert after == [], after
    assert erased["blobs_removed"] == 1
    shared = await pool.fetchval("SELECT count(*) FROM blobs WHERE data = $1", SHARED_FILE)
    assert shared == 1, "the attachment bob sent too stays"
    assert await pool.fetchval("SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                               "WHERE c.contact_id = $1 AND body = 'hello from bob'", bob) == 1


async def test_erase_and_merge_wait_for_the_conversation_lock_before_touching_contact_rows(pool, clean):
    """A worker holding a conversation's lock and then touching its contact row must never deadlock
    with an erasure or a merge of that contact (both once locked the contact row first)."""
    from gateway.domain import thread
    from gateway.inbox.merge import merge_contacts
    from gateway.inbox.privacy import erase_contact

    ids = [await pool.fetchval("INSERT INTO contacts (name) VALUES ($1) RETURNING id", n) for n in ("a", "b", "c")]
    convs = {c: await pool.fetchval("INSERT INTO conversations (contact_id) VALUES ($1) RETURNING id", c)
             for c in (ids[0], ids[2])}

    async def run(operation):
        async with pool.acquire() as conn, conn.transaction():
            return await operation(conn)

    for operation, conv, contact in (
            (lambda c: merge_contacts(c, ids[0], ids[1], thread.Effects()), convs[ids[0]], ids[0]),
            (lambda c: erase_contact(c, ids[2], thread.Effects()), convs[ids[2]], ids[2])):
        async with pool.acquire() as worker, worker.transaction():
            await worker.execute("SELECT pg_advisory_xact_lock($1)", conv)      # the worker's turn
            task = asyncio.create_task(run(operation))
            await asyncio.sleep(0.5)                                             # it now waits for us
            await worker.execute("SET LOCAL lock_timeout = '10s'")
            await worker.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", contact)
        await asyncio.wait_for(task, 30)
    assert await pool.fetchval("SELECT merged_into FROM contacts WHERE id = $1", ids[1]) == ids[0]
    assert await pool.fetchval("SELECT erased_at IS NOT NULL FROM contacts WHERE id = $1", ids[2])
