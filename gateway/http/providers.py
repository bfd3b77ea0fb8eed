"""Provider webhooks: Twilio (SMS, MMS, WhatsApp) and the Meta WhatsApp Cloud API.

Each handler stays small: verify the signature, parse to normalized data, persist, answer.
Rejections: bad signature 403, malformed payload 400, wrong content type 415; unsupported events
are acknowledged with 200 and ignored so the provider stops retrying. PostgreSQL down -> 503.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.domain import inputs, status, thread

from gateway.pipeline import intake
from gateway.channels.errors import PayloadError
from gateway.channels.twilio import adapter as twilio
from gateway.channels.whatsapp import adapter as whatsapp
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME
from gateway.domain.identity import AddressError
from gateway.inboxes import store as inboxes
from gateway.app.log import get_logger
from gateway.app.metrics import REJECTED, STATUS_UPDATES
from gateway.app.sandbox_secrets import twilio_webhook_token, whatsapp_app_secret, whatsapp_verify_token
from gateway.domain.types import StatusUpdate

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)

def register(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/inbound", twilio_inbound)
    app.router.add_post("/webhooks/twilio/status", twilio_status)
    app.router.add_get("/webhooks/whatsapp", whatsapp_verify)
    app.router.add_post("/webhooks/whatsapp", whatsapp_events)


def _reject(endpoint: str, reason: str, status: int, message: str) -> ApiError:
    REJECTED.labels(endpoint, reason).inc()
    return ApiError(status, reason, message)


async def _twilio_params(request: web.Request, endpoint: str) -> list[tuple[str, str]]:
    """The verified form parameters of a Twilio webhook (403 on a bad signature)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise _reject(endpoint, "unsupported_media_type", 415, "expected application/x-www-form-urlencoded")
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
        raise _reject(endpoint, "bad_signature", 403, "X-Twilio-Signature does not match")
    return params


async def twilio_inbound(request: web.Request) -> web.Response:
    params = await _twilio_params(request, "twilio_inbound")
    try:
        inbound = twilio.parse_inbound(params)
        await intake.accept(request.app[RUNTIME], inbound)
    except (PayloadError, AddressError) as exc:
        raise _reject("twilio_inbound", "invalid_payload", 400, str(exc)) from None
    return web.Response(text=twilio.EMPTY_TWIML, content_type="text/xml")


async def twilio_status(request: web.Request) -> web.Response:
    params = await _twilio_params(request, "twilio_status")
    try:
        update = twilio.parse_status(params)
    except PayloadError as exc:
        raise _reject("twilio_status", "invalid_payload", 400, str(exc)) from None
    if update is not None:
        await record_status(request.app[RUNTIME], update)
    return web.Response(text=twilio.EMPTY_TWIML, content_type="text/xml")


async def record_status(rt: Runtime, update: StatusUpdate) -> bool:
    """Apply a delivery status monotonically (kept for later when it arrived before the send's answer);
    a provider opt-out code revokes consent.

    Raises InputError (a PayloadError) for a report whose ids cannot be stored."""
    update = inputs.clean_status(update)
    effects = thread.Effects()
    async with rt.pool.acquire(timeout=5) as conn, conn.transaction():
        applied = await status.record(conn, update, rt.hooks, effects)
    STATUS_UPDATES.labels(update.channel.value, "yes" if applied else "no").inc()
    await rt.publish_effects(effects)
    return applied is not None


async def whatsapp_verify(request: web.Request) -> web.Response:
    token = whatsapp_verify_token(request.app[RUNTIME].settings)
    challenge = whatsapp.verify_subscription(request.query, token)
    if challenge is None:
        raise _reject("whatsapp_verify", "bad_verify_token", 403, "verification failed")
    # Echoed as plain text; nosniff (set on every response, gateway.http.app) keeps a browser from
    # rendering a crafted challenge as HTML.
    return web.Response(text=challenge, content_type="text/plain")


async def whatsapp_events(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    raw = await request.read()
    if not whatsapp.verify_signature(raw, request.headers.get("X-Hub-Signature-256"),
                                     whatsapp_app_secret(rt.settings)):
        raise _reject("whatsapp", "bad_signature", 403, "X-Hub-Signature-256 does not match")
    try:
        # Strings are checked per message (intake.accept): one bad message must not refuse the
        # others of the same POST, which Meta would then retry for days.
        batch = whatsapp.parse_webhook(inputs.loads(raw, strings="keep"))
    except PayloadError as exc:
        raise _reject("whatsapp", "invalid_payload", 400, f"malformed payload: {exc}") from None
    refused = []
    for inbound in batch.messages:
        try:
            await intake.accept(rt, inbound)
        except (AddressError, PayloadError) as exc:
            REJECTED.labels("whatsapp", "invalid_message").inc()
            log.warning("whatsapp message refused; the others of its POST are kept", error=str(exc))
            refused.append(str(exc))
    for update in batch.statuses:
        try:
            await record_status(rt, update)
        except PayloadError as exc:
            log.warning("whatsapp status refused", error=str(exc))
            refused.append(str(exc))
    if batch.ignored:
        log.info("whatsapp items ignored", items=list(batch.ignored)[:10])
    return web.json_response({"status": "ok", **({"refused": refused[:20]} if refused else {})})
