"""Files agents attach to replies: uploaded once, served to the providers from a signed link.

  POST /api/v1/uploads?filename=NAME   the raw file as the body, its type as Content-Type
                                       -> {url, content_type, filename, size}; put it in a reply's
                                          `attachments` (Twilio and WhatsApp fetch it from `url`)
  GET  /media/{token}/{filename}       the file, for whoever holds the signed, expiring link

The bytes are kept in `blobs` by content hash (like inbound email attachments). The link signs the
hash, its type, the name and an expiry with a key derived from GATEWAY_SECRET_KEY; it is served
with the same never-run headers as customer files (gateway.http.attachments).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import quote, unquote

from aiohttp import web

from gateway.domain.blobs import blob, store_blob
from gateway.domain.secret_keys import derive_key
from gateway.http.attachments import SAFE_HEADERS, disposition
from gateway.http.errors import ApiError
from gateway.http.inbox_common import ACT, respond, transaction
from gateway.http.keys import RUNTIME
from gateway.http.openapi import Param, obj, operation

LINK_TTL = 7 * 24 * 3600      # providers fetch at send time and on retries; a week covers both
_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
STR = {"type": "string"}
UPLOADED = obj(["url", "content_type", "filename", "size"], url=STR, content_type=STR, filename=STR,
               size={"type": "integer"})


def _key(secret_key: str) -> bytes:
    return derive_key(secret_key, "gateway media link v1")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _signature(secret_key: str, digest: str, expires: int, content_type: str, filename: str) -> str:
    signed = f"{digest}|{expires}|{content_type}|{filename}".encode()
    return _b64(hmac.new(_key(secret_key), signed, hashlib.sha256).digest()[:18])


def media_token(secret_key: str, digest: str, content_type: str, filename: str, expires: int) -> str:
    """`<sha256 hex>.<expires>.<type, base64>.<signature>`: the link names its file, type and end."""
    kind = _b64(content_type.encode())
    return f"{digest}.{expires}.{kind}.{_signature(secret_key, digest, expires, content_type, filename)}"


def _filename(raw: str | None) -> str:
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>')[:200]
    return name or "attachment"


@operation("Upload a file to attach to a reply (raw body; its type as Content-Type); answers the link "
           "providers fetch it from", roles=ACT, query=(Param("filename", {"type": "string", "maxLength": 300}),),
           responses={201: UPLOADED}, tags=("inbox",))
async def upload(request: web.Request) -> web.Response:
    content_type = (request.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip().lower()
    if not _TYPE.match(content_type) or len(content_type) > 100:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be the file's media type")
    filename = _filename(request.query.get("filename"))
    data = await request.read()
    if not data:
        raise ApiError(400, "invalid_field", "the body is the file and must not be empty", field="body")
    digest = hashlib.sha256(data).hexdigest()
    async with transaction(request, *ACT) as tx:
        await store_blob(tx.conn, f"sha256:{digest}", content_type, data)
    rt = request.app[RUNTIME]
    token = media_token(rt.settings.secret_key, digest, content_type, filename, int(time.time()) + LINK_TTL)
    url = f"{rt.settings.base_url}/media/{token}/{quote(filename)}"
    return respond({"url": url, "content_type": content_type, "filename": filename, "size": len(data)}, status=201)


def verify(secret_key: str, token: str, filename: str) -> tuple[str, str] | None:
    """(blob ref, content type) of a valid, unexpired link; None otherwise."""
    try:
        digest, expires_raw, kind, signature = token.split(".")
        expires = int(expires_raw)
        content_type = base64.urlsafe_b64decode(kind + "=" * (-len(kind) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    good = _signature(secret_key, digest, expires, content_type, filename)
    if not hmac.compare_digest(good, signature) or expires < time.time():
        return None
    return f"sha256:{digest}", content_type


def own_media_ref(settings, url: str) -> str | None:
    """The blob behind one of our own media links (an agent's upload), so a reply can keep a
    reference to it (shown from the stored copy, erased with the contact); None for other URLs."""
    prefix = f"{settings.base_url}/media/"
    if not url.startswith(prefix):
        return None
    token, _, name = url[len(prefix):].partition("/")
    found = verify(settings.secret_key, token, unquote(name))
    return found[0] if found else None


async def media(request: web.Request) -> web.Response:
    """A file an agent attached, for the holder of its signed link (the providers)."""
    filename = request.match_info["filename"]
    rt = request.app[RUNTIME]
    found = verify(rt.settings.secret_key, request.match_info["token"], filename)
    if found is None:
        raise web.HTTPNotFound()
    ref, content_type = found
    row = await blob(rt.pool, ref)
    if row is None:
        raise web.HTTPNotFound()
    return web.Response(body=row["data"], content_type=content_type,
                        headers={**SAFE_HEADERS, "Content-Disposition": disposition(content_type, filename)})


def register(app: web.Application) -> None:
    app.router.add_post("/api/v1/uploads", upload)
    app.router.add_get("/media/{token}/{filename}", media)
