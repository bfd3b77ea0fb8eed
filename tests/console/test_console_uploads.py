"""Files agents attach: uploaded through the API, served to providers from a signed, expiring link
with headers that never let them run, and refused when the link is altered."""
from __future__ import annotations

import time

import aiohttp
from console_support import ADMIN_TOKEN

from gateway.devtools.testing import running_gateway
from gateway.http import uploads

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_upload_then_fetch_by_signed_link_only(settings, pool, clean, redis_client):
    async with running_gateway(settings, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.post(f"{url}/api/v1/uploads", params={"filename": "../../receipt <1>.png"}, data=PNG,
                             headers={**auth, "Content-Type": "image/png"}) as resp:
            assert resp.status == 201, await resp.text()
            made = await resp.json()
        assert made["filename"] == "receipt 1.png" and made["size"] == len(PNG) and made["content_type"] == "image/png"
        assert made["url"].startswith(f"{url}/media/")
        async with http.get(made["url"]) as resp:          # no credentials: the link is the right
            assert resp.status == 200 and await resp.read() == PNG
            assert resp.content_type == "image/png" and resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Content-Security-Policy"].startswith("sandbox")
            assert resp.headers["Content-Disposition"] == 'inline; filename="receipt 1.png"'
        token, name = made["url"].split("/media/", 1)[1].split("/", 1)
        digest, expires, kind, sig = token.split(".")
        html_kind = uploads._b64(b"text/html")
        for altered in (f"{url}/media/{token}/other.png", f"{url}/media/{digest}.{int(expires) + 1}.{kind}.{sig}/{name}",
                        f"{url}/media/{digest}.{expires}.{html_kind}.{sig}/{name}", f"{url}/media/nonsense/{name}"):
            async with http.get(altered) as resp:
                assert resp.status == 404, altered
        old = uploads.media_token(settings.secret_key, digest, "image/png", "receipt 1.png", int(time.time()) - 1)
        async with http.get(f"{url}/media/{old}/receipt%201.png") as resp:
            assert resp.status == 404, "an expired link"
        async with http.post(f"{url}/api/v1/uploads", data=b"", headers={**auth, "Content-Type": "image/png"}) as resp:
            assert resp.status == 400
        async with http.post(f"{url}/api/v1/uploads", data=b"x", headers={**auth, "Content-Type": "not a type"}) as resp:
            assert resp.status == 415
        async with http.post(f"{url}/api/v1/uploads", data=PNG, headers={"Content-Type": "image/png"}) as resp:
            assert resp.status == 401
    assert await pool.fetchval("SELECT count(*) FROM blobs") == 1


async def test_a_reply_keeps_its_upload_and_erasure_removes_it(settings, pool, clean, redis_client):
    contact = await pool.fetchval("INSERT INTO contacts (name, external_id) VALUES ('Ana', 'ana') RETURNING id")
    await pool.execute("INSERT INTO identities (contact_id, kind, address) VALUES ($1, 'api', 'ana')", contact)
    cid = await pool.fetchval(
        """INSERT INTO conversations (contact_id, status, mode, last_inbound_channel, last_inbound_at)
           VALUES ($1, 'open', 'agent', 'api', now()) RETURNING id""", contact)
    async with running_gateway(settings, roles=("http",)) as (rt, url), aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.post(f"{url}/api/v1/uploads", params={"filename": "receipt.png"}, data=PNG,
                             headers={**auth, "Content-Type": "image/png"}) as resp:
            made = await resp.json()
        reply = {"text": "your receipt", "attachments": [
            {"url": made["url"], "content_type": "image/png", "filename": "receipt.png"},
            {"url": "https://example.com/elsewhere.png"}]}
        async with http.post(f"{url}/api/v1/conversations/{cid}/messages", json=reply, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
            message = (await resp.json())["message"]
        ours, theirs = message["content"]["attachments"]
        assert ours["content_ref"] == f"sha256:{made['url'].split('/media/')[1].split('.')[0]}"
        assert "content_ref" not in theirs, "a link elsewhere stays a link"
        async with http.get(f"{url}/api/v1/conversations/{cid}/messages/{message['id']}/attachments/0",
                            headers=auth) as resp:
            assert resp.status == 200 and await resp.read() == PNG, "the console shows the stored copy"
        async with http.post(f"{url}/api/v1/contacts/{contact}/erase", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(made["url"]) as resp:
            assert resp.status == 404, "the erased contact's file is gone"
    assert await pool.fetchval("SELECT count(*) FROM blobs") == 0
