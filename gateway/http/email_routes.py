"""Inbound email webhooks (SendGrid Inbound Parse, Mailgun forward) and one-click unsubscribe.

Mailgun posts are signed (HMAC over timestamp + token with GATEWAY_EMAIL_WEBHOOK_KEY, stale ones
rejected, a token reused for another message rejected). SendGrid posts are not signed: the URL
must carry `?key=<GATEWAY_EMAIL_WEBHOOK_KEY>` (or Basic auth with it as the password).
"""
from __future__ import annotations

import base64
import hmac
import html

from aiohttp import web

from gateway import consent
from gateway.channels.email import (iter_webhook_payloads, parse_mailgun, parse_sendgrid, read_form,
                                    verify_mailgun_signature)
from gateway.channels.errors import PayloadError
from gateway.email_intake import accept_email, parse_unsubscribe_token
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME
from gateway.identity import AddressError
from gateway.log import get_logger
from gateway.metrics import REJECTED
from gateway.sandbox_secrets import email_webhook_key

log = get_logger(__name__)
MAX_EMAIL_BYTES = 30 * 1024 * 1024
TOKEN_TTL = 24 * 3600


def register(app: web.Application) -> None:
    app.router.add_post("/webhooks/email/inbound", email_inbound)
    app.router.add_get("/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe_one_click)


def _sendgrid_authorized(request: web.Request, key: str) -> bool:
    given = request.query.get("key", "")
    auth = request.headers.get("Authorization", "")
    if not given and auth.startswith("Basic "):
        try:
            given = base64.b64decode(auth[6:]).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            given = ""
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())


async def email_inbound(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    key = email_webhook_key(rt.settings)
    try:
        fields, files = await read_form(request, max_bytes=MAX_EMAIL_BYTES)
    except PayloadError as exc:
        REJECTED.labels("email", "too_large").inc()
        raise ApiError(413, "too_large", str(exc)) from None
    mailgun = "signature" in fields and "token" in fields and "timestamp" in fields
    text = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in fields.items()
            if k in ("signature", "token", "timestamp")}
    replay_key = None
    if mailgun:
        if not verify_mailgun_signature(text["timestamp"], text["token"], text["signature"], key):
            REJECTED.labels("email", "bad_signature").inc()
            raise ApiError(403, "bad_signature", "Mailgun signature does not verify (or is stale)")
        replay_key = rt.keys.replay_guard("mailgun", text["token"])
    elif not _sendgrid_authorized(request, key):
        REJECTED.labels("email", "unauthorized").inc()
        raise ApiError(401, "unauthorized", "inbound email webhook key missing or wrong")
    try:
        inbound = (parse_mailgun if mailgun else parse_sendgrid)(
            fields, files, reply_domain=rt.settings.email_reply_domain)
    except PayloadError as exc:
        REJECTED.labels("email", "invalid_payload").inc()
        # Mailgun: 406 means "rejected, do not retry"; SendGrid only retries 5xx
        raise ApiError(406 if mailgun else 400, "invalid_payload", str(exc)) from None
    if replay_key is not None:
        seen = await rt.redis.get(replay_key)
        if seen is not None and seen.decode() != inbound.provider_message_id:
            REJECTED.labels("email", "replayed_token").inc()
            raise ApiError(406, "replayed_token", "this signature token was already used for another message")
    try:
        result = await accept_email(rt, inbound, iter_webhook_payloads(fields, files))
    except AddressError as exc:
        raise ApiError(406 if mailgun else 400, "invalid_sender", str(exc)) from None
    if replay_key is not None:
        await rt.redis.set(replay_key, inbound.provider_message_id, ex=TOKEN_TTL)
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
