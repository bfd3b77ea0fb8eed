"""Twilio's inbound routes: SMS, MMS and WhatsApp-over-Twilio messages and status callbacks.

Each handler stays small: verify the signature, parse to normalized data, persist, answer (empty TwiML).
Rejections: bad signature 403, malformed payload 400, wrong content type 415. PostgreSQL down -> 503.
"""
from __future__ import annotations

from aiohttp import web

from gateway.channels.errors import PayloadError
from gateway.channels.twilio import adapter as twilio
from gateway.channels.twilio.secrets import twilio_webhook_token
from gateway.domain.identity import AddressError
from gateway.http.errors import reject
from gateway.http.keys import RUNTIME
from gateway.inboxes import store as inboxes
from gateway.pipeline import intake


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/inbound", twilio_inbound)
    app.router.add_post("/webhooks/twilio/status", twilio_status)


async def _twilio_params(request: web.Request, endpoint: str) -> list[tuple[str, str]]:
    """The verified form parameters of a Twilio webhook (403 on a bad signature)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise reject(endpoint, "unsupported_media_type", 415, "expected application/x-www-form-urlencoded")
    form = await request.post()
    params = [(k, v) for k, v in form.items() if isinstance(v, str)]
    rt = request.app[RUNTIME]
    url = twilio.public_url(rt.settings.public_url, request.scheme, request.host, request.path_qs)
    token = twilio_webhook_token(rt.settings)
    account = dict(params).get("AccountSid")
    if account and account != rt.settings.twilio_account_sid:   # an inbox's own account signs its webhooks
        token = await inboxes.twilio_auth_token(rt.pool, rt.settings.secret_key, account) or token
    secret, algorithm = twilio.signing_secret(request.headers.get(twilio.SIGNATURE_SETTINGS_HEADER),
                                              auth_token=token,
                                              shared_key=rt.settings.twilio_webhook_shared_key)
    if not twilio.validate_signature(url, params, request.headers.get(twilio.SIGNATURE_HEADER), secret, algorithm):
        raise reject(endpoint, "bad_signature", 403, "X-Twilio-Signature does not match")
    return params


async def twilio_inbound(request: web.Request) -> web.Response:
    params = await _twilio_params(request, "twilio_inbound")
    try:
        inbound = twilio.parse_inbound(params)
        await intake.accept(request.app[RUNTIME], inbound)
    except (PayloadError, AddressError) as exc:
        raise reject("twilio_inbound", "invalid_payload", 400, str(exc)) from None
    return web.Response(text=twilio.EMPTY_TWIML, content_type="text/xml")


async def twilio_status(request: web.Request) -> web.Response:
    params = await _twilio_params(request, "twilio_status")
    try:
        update = twilio.parse_status(params)
    except PayloadError as exc:
        raise reject("twilio_status", "invalid_payload", 400, str(exc)) from None
    if update is not None:
        await intake.record_status(request.app[RUNTIME], update)
    return web.Response(text=twilio.EMPTY_TWIML, content_type="text/xml")
