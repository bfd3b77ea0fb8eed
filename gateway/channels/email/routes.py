"""The email channel's routes: inbound webhooks (SendGrid Inbound Parse, Mailgun forward) and one-click unsubscribe.

Mailgun posts are signed (HMAC over timestamp + token with GATEWAY_EMAIL_WEBHOOK_KEY, stale ones
rejected, a signature reused for another post rejected). SendGrid posts are not signed: the URL
must carry `?key=<GATEWAY_EMAIL_WEBHOOK_KEY>` (or Basic auth with it as the password). The key is
checked before the body is read; see `_body_cap` for the size limits.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.app.log import get_logger
from gateway.app.metrics import REJECTED
from gateway.channels.email import (iter_webhook_payloads, parse_mailgun, parse_sendgrid, read_form,
                                    verify_mailgun_signature)
from gateway.channels.email.intake import accept_email
from gateway.channels.email.secrets import email_webhook_key
from gateway.channels.email.unsubscribe import parse_unsubscribe_token
from gateway.channels.errors import PayloadError
from gateway.domain import consent
from gateway.domain.identity import AddressError
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)
TOKEN_TTL = 24 * 3600
LARGE_BODY_WAIT = 30.0
_LARGE_BODIES = web.AppKey("email_large_bodies", asyncio.Semaphore)


def add_routes(app: web.Application) -> None:
    app[_LARGE_BODIES] = asyncio.Semaphore(app[RUNTIME].settings.email_large_bodies)
    app.router.add_post("/webhooks/email/inbound", email_inbound)
    app.router.add_get("/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe_one_click)


def _key_authorized(request: web.Request, key: str) -> bool:
    """The webhook key in `?key=`, an `X-Webhook-Key` header or Basic auth (as the password)."""
    given = request.query.get("key", "") or request.headers.get("X-Webhook-Key", "")
    auth = request.headers.get("Authorization", "")
    if not given and auth.startswith("Basic "):
        try:
            given = base64.b64decode(auth[6:]).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            given = ""
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())


def _body_cap(request: web.Request, key_given: bool) -> int:
    """How many bytes this post may have, checked against Content-Length before reading a byte.

    A post carrying the key is authenticated before its body is read and may be as large as
    GATEWAY_EMAIL_MAX_BYTES. Without it, only a Mailgun signature inside the body can authenticate
    it, so such a body is held to the general GATEWAY_MAX_BODY_BYTES.
    """
    s = request.app[RUNTIME].settings
    cap = s.email_max_bytes if key_given else s.max_body_bytes
    if request.content_length is not None and request.content_length > cap:
        REJECTED.labels("email", "too_large").inc()
        raise ApiError(413, "too_large", f"inbound email body exceeds {cap} bytes"
                       + ("" if key_given else " (put the webhook key in the URL to send larger mail)"))
    return cap


@contextlib.asynccontextmanager
async def _large_body_slot(request: web.Request, cap: int):
    """Bodies above GATEWAY_MAX_BODY_BYTES (or of unknown length) are read a few at a time."""
    s = request.app[RUNTIME].settings
    length = request.content_length
    if length is not None and length <= s.max_body_bytes or cap <= s.max_body_bytes:
        yield
        return
    slots = request.app[_LARGE_BODIES]
    try:
        await asyncio.wait_for(slots.acquire(), LARGE_BODY_WAIT)
    except asyncio.TimeoutError:
        REJECTED.labels("email", "busy").inc()
        raise ApiError(503, "busy", "too many large emails are being received; retry later",
                       headers={"Retry-After": "30"}) from None
    try:
        yield
    finally:
        slots.release()


def form_fingerprint(fields: dict, files: list) -> str:
    """A digest of everything a post carries: a provider's retry of one post has the same one."""
    digest = hashlib.sha256()
    for name in sorted(fields):
        value = fields[name]
        digest.update(name.encode() + b"\0" + (value if isinstance(value, bytes) else value.encode(
            "utf-8", "surrogateescape")) + b"\0")
    for f in files:
        digest.update(f.field_name.encode() + b"\0" + f.data + b"\0")
    return digest.hexdigest()


async def _claim_mailgun_signature(rt: Runtime, text: dict, fingerprint: str) -> None:
    """Bind one signature (timestamp, token, signature) to one post, atomically (SET NX).

    The same post again (Mailgun retrying) passes and is deduplicated by the store; the signature
    reused on a different post is refused, however many arrive at once.
    """
    bound = hashlib.sha256("\0".join((text["timestamp"], text["token"], text["signature"])).encode()).hexdigest()
    key = rt.keys.replay_guard("mailgun", bound)
    if await rt.redis.set(key, fingerprint, nx=True, ex=TOKEN_TTL):
        return
    seen = await rt.redis.get(key)
    if seen is None or seen.decode() != fingerprint:
        REJECTED.labels("email", "replayed_token").inc()
        raise ApiError(406, "replayed_token", "this signature was already used for another message")


async def email_inbound(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    key = email_webhook_key(rt.settings)
    key_given = _key_authorized(request, key)
    cap = _body_cap(request, key_given)
    async with _large_body_slot(request, cap):
        try:
            fields, files = await read_form(request, max_bytes=cap)
        except PayloadError as exc:
            REJECTED.labels("email", "too_large").inc()
            raise ApiError(413, "too_large", str(exc)) from None
        except web.HTTPRequestEntityTooLarge:
            REJECTED.labels("email", "too_large").inc()
            raise ApiError(413, "too_large", f"inbound email body exceeds {cap} bytes") from None
    mailgun = "signature" in fields and "token" in fields and "timestamp" in fields
    text = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in fields.items()
            if k in ("signature", "token", "timestamp")}
    if mailgun:
        if not verify_mailgun_signature(text["timestamp"], text["token"], text["signature"], key):
            REJECTED.labels("email", "bad_signature").inc()
            raise ApiError(403, "bad_signature", "Mailgun signature does not verify (or is stale)")
    elif not key_given:
        REJECTED.labels("email", "unauthorized").inc()
        raise ApiError(401, "unauthorized", "inbound email webhook key missing or wrong")
    try:
        inbound = (parse_mailgun if mailgun else parse_sendgrid)(
            fields, files, reply_domain=rt.settings.email_reply_domain)
    except PayloadError as exc:
        REJECTED.labels("email", "invalid_payload").inc()
        # Mailgun: 406 means "rejected, do not retry"; SendGrid only retries 5xx
        raise ApiError(406 if mailgun else 400, "invalid_payload", str(exc)) from None
    if mailgun:
        await _claim_mailgun_signature(rt, text, form_fingerprint(fields, files))
    try:
        result = await accept_email(rt, inbound, iter_webhook_payloads(fields, files))
    except (AddressError, PayloadError) as exc:   # PayloadError: gateway.domain.inputs refused a field
        raise ApiError(406 if mailgun else 400, "invalid_sender" if isinstance(exc, AddressError)
                       else "invalid_payload", str(exc)) from None
    return web.json_response({"status": "ok", "message_id": result.message_id, "duplicate": result.duplicate})


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto">{body}</body></html>"""


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET shows a confirmation (mail scanners prefetch links: a GET never unsubscribes)."""
    address = parse_unsubscribe_token(request.app[RUNTIME].settings, request.match_info["token"])
    if address is None:
        return web.Response(status=404, text=PAGE.format(body="<p>This link is not valid.</p>"),
                            content_type="text/html")
    body = (f"<p>Stop marketing emails to <b>{html.escape(address)}</b>?</p>"
            f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">Unsubscribe</button></form>')
    return web.Response(text=PAGE.format(body=body), content_type="text/html")


async def unsubscribe_one_click(request: web.Request) -> web.Response:
    """RFC 8058 one-click: idempotent, no redirect, no cookies needed."""
    rt = request.app[RUNTIME]
    address = parse_unsubscribe_token(rt.settings, request.match_info["token"])
    if address is None:
        return web.Response(status=404, text="invalid link")
    async with rt.pool.acquire(timeout=5) as conn, conn.transaction():
        await consent.set_consent(conn, kind="email", address=address, channel="email",
                                  purpose=consent.MARKETING, granted=False, source="list-unsubscribe")
    log.info("email unsubscribed", channel="email")
    return web.Response(text=PAGE.format(body="<p>You are unsubscribed. You will get no more marketing "
                                              "emails from us.</p>"), content_type="text/html")
