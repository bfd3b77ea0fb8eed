"""Pigeon post's inbound webhook: verify the key, parse, hand the message to the pipeline's intake."""
from __future__ import annotations

import hmac

from aiohttp import web
from pigeon import secrets

from gateway.domain.types import Channel, Inbound
from gateway.http.body import read_json
from gateway.http.errors import reject
from gateway.http.keys import RUNTIME
from gateway.pipeline import intake


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/pigeon", pigeon_inbound)


async def pigeon_inbound(request: web.Request) -> web.Response:
    if not hmac.compare_digest(request.headers.get("X-Pigeon-Key", ""), secrets.key()):
        raise reject("pigeon", "bad_signature", 403, "X-Pigeon-Key does not match")
    data = await read_json(request)
    inbound = Inbound(channel=Channel.SMS, provider="pigeon", provider_message_id=data["id"],
                      sender=data["from"], recipient=data.get("to"), text=data["text"])
    result = await intake.accept(request.app[RUNTIME], inbound)
    return web.json_response({"message_id": result.message_id, "duplicate": result.duplicate})
