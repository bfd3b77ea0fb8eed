"""Meta WhatsApp Cloud API routes: the subscription check (GET) and the signed events (POST).

Rejections: bad signature or verify token 403, malformed payload 400; one message of a POST that
cannot be stored is refused alone (named in the answer), unsupported items are acknowledged and logged.
"""
from __future__ import annotations

from aiohttp import web

from gateway.app.log import get_logger
from gateway.app.metrics import REJECTED
from gateway.channels.errors import PayloadError
from gateway.channels.whatsapp import adapter as whatsapp
from gateway.channels.whatsapp.secrets import whatsapp_app_secret, whatsapp_verify_token
from gateway.domain import inputs
from gateway.domain.identity import AddressError
from gateway.http.errors import reject
from gateway.http.keys import RUNTIME
from gateway.pipeline import intake

log = get_logger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/webhooks/whatsapp", whatsapp_verify)
    app.router.add_post("/webhooks/whatsapp", whatsapp_events)


async def whatsapp_verify(request: web.Request) -> web.Response:
    token = whatsapp_verify_token(request.app[RUNTIME].settings)
    challenge = whatsapp.verify_subscription(request.query, token)
    if challenge is None:
        raise reject("whatsapp_verify", "bad_verify_token", 403, "verification failed")
    # Echoed as plain text; nosniff (set on every response by the app) keeps a browser from
    # rendering a crafted challenge as HTML.
    return web.Response(text=challenge, content_type="text/plain")


async def whatsapp_events(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    raw = await request.read()
    if not whatsapp.verify_signature(raw, request.headers.get("X-Hub-Signature-256"),
                                     whatsapp_app_secret(rt.settings)):
        raise reject("whatsapp", "bad_signature", 403, "X-Hub-Signature-256 does not match")
    try:
        # Strings are checked per message (intake.accept): one bad message must not refuse the
        # others of the same POST, which Meta would then retry for days.
        batch = whatsapp.parse_webhook(inputs.loads(raw, strings="keep"))
    except PayloadError as exc:
        raise reject("whatsapp", "invalid_payload", 400, f"malformed payload: {exc}") from None
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
            await intake.record_status(rt, update)
        except PayloadError as exc:
            log.warning("whatsapp status refused", error=str(exc))
            refused.append(str(exc))
    if batch.ignored:
        log.info("whatsapp items ignored", items=list(batch.ignored)[:10])
    return web.json_response({"status": "ok", **({"refused": refused[:20]} if refused else {})})
