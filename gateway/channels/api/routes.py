"""The API channel's inbound route: `POST /api/v1/inbound` from a business system.

Body: {"client_message_id": "...", "contact": {"external_id"|"phone"|"email"|"contact_id": ..., "name": ...},
       "text": "...", "attachments": [{"url": "...", "content_type": "..."}]}
The client message id makes the call idempotent: a retry answers 200 with the same message.
"""
from __future__ import annotations

from aiohttp import web

from gateway.domain import contacts
from gateway.domain.types import Attachment, Channel, Inbound
from gateway.http.access import principal
from gateway.http.body import read_json
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME
from gateway.http.openapi import ID, array, obj, operation
from gateway.pipeline import intake

MAX_TEXT = 10_000

INBOUND_BODY = obj(
    ["client_message_id", "contact"],
    client_message_id={"type": "string", "minLength": 1, "maxLength": 200},
    contact=obj(None, contact_id=ID, external_id={"type": "string"}, phone={"type": "string"},
                email={"type": "string"}, name={"type": "string"}),
    text={"type": "string", "maxLength": 10000},
    attachments=array(obj(["url"], url={"type": "string"}, content_type={"type": "string"},
                          filename={"type": "string"})),
)
INBOUND_RESULT = obj(["message_id", "conversation_id", "contact_id", "seq", "duplicate"],
                      message_id=ID, conversation_id=ID, contact_id=ID, seq={"type": "integer"},
                      duplicate={"type": "boolean"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/inbound", post_inbound)


def parse_inbound_body(data: dict) -> tuple[contacts.ContactRef, Inbound]:
    cmid = data.get("client_message_id")
    if not isinstance(cmid, str) or not cmid.strip() or len(cmid) > 200:
        raise ApiError(400, "invalid_field", "client_message_id must be a non-empty string (max 200 chars)",
                       field="client_message_id")
    text = data.get("text", "")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise ApiError(400, "invalid_field", f"text must be a string of at most {MAX_TEXT} characters")
    attachments = []
    for i, a in enumerate(data.get("attachments") or []):
        if not isinstance(a, dict) or not isinstance(a.get("url"), str) or \
                not a["url"].startswith(("http://", "https://")):
            raise ApiError(400, "invalid_field", f"attachments[{i}].url must be an http(s) URL")
        attachments.append(Attachment(url=a["url"], content_type=a.get("content_type"),
                                      filename=a.get("filename")))
    if not text.strip() and not attachments:
        raise ApiError(400, "invalid_field", "a message needs text or attachments")
    try:
        ref = contacts.ContactRef.parse(data.get("contact"))
    except contacts.ContactRefError as exc:
        raise ApiError(400, "invalid_contact", str(exc)) from None
    sender = ref.external_id or ref.phone or ref.email or str(ref.contact_id)
    inbound = Inbound(channel=Channel.API, provider="api", provider_message_id=cmid.strip(), sender=sender,
                      text=text, attachments=tuple(attachments), profile_name=ref.name,
                      raw={k: v for k, v in data.items() if k != "contact"})
    return ref, inbound


@operation("A customer message from a business system (API channel); idempotent by client_message_id",
           responses={201: INBOUND_RESULT, 200: INBOUND_RESULT}, roles=("integration",), request=INBOUND_BODY,
           tags=("api channel",))
async def post_inbound(request: web.Request) -> web.Response:
    await principal(request, "integration")
    data = await read_json(request)
    ref, inbound = parse_inbound_body(data)
    try:
        result = await intake.accept(request.app[RUNTIME], inbound, contact_ref=ref)
    except contacts.ContactRefError as exc:
        raise ApiError(400, "invalid_contact", str(exc)) from None
    return web.json_response(
        {"message_id": result.message_id, "conversation_id": result.conversation_id,
         "contact_id": result.contact_id, "seq": result.seq, "duplicate": result.duplicate},
        status=200 if result.duplicate else 201)
