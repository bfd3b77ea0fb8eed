"""Admin API of inboxes: GET/POST /api/v1/inboxes, GET/PATCH/DELETE /api/v1/inboxes/{id}.

Credentials are written here (sealed with the key derived from the secret key) and never answered:
an inbox says `has_credentials`. Business hours use the flows' format (gateway.flows.hours).
"""
from __future__ import annotations

import contextlib

from aiohttp import web

from gateway.flows.hours import BusinessHours, HoursError
from gateway.http.inbox_common import (ADMIN, READ, bad, body, id_field, path_id, q_choice, respond, text_field,
                                       transaction)
from gateway.http.keys import RUNTIME
from gateway.http.openapi import ID, TIME, Param, array, nullable, obj, operation
from gateway.inbox import Conflict, Invalid, NotFound, actions
from gateway.inboxes import InboxRefused, secrets
from gateway.inboxes import store as inboxes
from gateway.inboxes.model import CREDENTIAL_FIELDS, PROVIDERS

STR = {"type": "string"}
N_STR = nullable(STR)
CHANNEL = {"type": "string", "enum": list(PROVIDERS)}
PROVIDER = {"type": "string", "enum": sorted({p for ps in PROVIDERS.values() for p in ps})}
HOURS = nullable({"type": "object", "description": "business hours: {timezone, monday: \"09:00-17:00\", ..., "
                                                  "closed_dates: [YYYY-MM-DD]}; a weekday left out is closed"})
CREDENTIALS = nullable(obj(None, **{f: STR for fs in CREDENTIAL_FIELDS.values() for f in fs}))
INBOX = obj(["id", "name", "channel", "provider", "address", "is_default", "has_credentials"],
            id=ID, name=STR, channel=CHANNEL, provider=PROVIDER, address=N_STR, is_default={"type": "boolean"},
            flow=N_STR, team_id=nullable(ID), hours=HOURS, out_of_hours_text=N_STR, signature=N_STR,
            has_credentials={"type": "boolean"}, created_at=TIME, updated_at=TIME)
_FIELDS = dict(name={"type": "string", "minLength": 1, "maxLength": 200}, provider=PROVIDER,
               address={"type": "string", "minLength": 1, "maxLength": 320}, flow=N_STR, team_id=nullable(ID),
               hours=HOURS, out_of_hours_text=N_STR, signature=N_STR, credentials=CREDENTIALS)
INBOX_NEW = obj(["name", "channel", "address"], channel=CHANNEL, **_FIELDS)
INBOX_PATCH = obj(None, **_FIELDS)


@contextlib.contextmanager
def refusals():
    """The store's refusals as the inbox API's errors (404, 409, 422)."""
    try:
        yield
    except InboxRefused as exc:
        if exc.kind == "not_found":
            raise NotFound() from None
        raise (Conflict if exc.kind == "conflict" else Invalid)(exc.code, exc.message) from None


def _optional_text(data: dict, name: str, max_len: int) -> dict:
    """{name: value} when the body has the field (null clears it), else {}."""
    if name not in data:
        return {}
    return {name: text_field(data, name, required=False, max_len=max_len)}


def _fields(request: web.Request, data: dict, provider: str | None) -> dict:
    """The settable fields present in `data`, checked (400 naming the field)."""
    out: dict = {}
    for name, max_len in (("flow", 200), ("out_of_hours_text", 2000), ("signature", 2000)):
        out.update(_optional_text(data, name, max_len))
    if "team_id" in data:
        out["team_id"] = id_field(data, "team_id", required=False)
    if "hours" in data and data["hours"] is not None:
        try:
            BusinessHours.parse(data["hours"])
        except HoursError as exc:
            raise bad("hours", str(exc)) from None
        out["hours"] = data["hours"]
    elif "hours" in data:
        out["hours"] = None
    if "credentials" in data:
        out["credentials"] = _credentials(request, data["credentials"], provider)
    return out


def _credentials(request: web.Request, raw, provider: str | None) -> bytes | None:
    if raw is None:
        return None
    allowed = CREDENTIAL_FIELDS.get(provider or "", ())
    if not isinstance(raw, dict) or not raw or not allowed:
        raise bad("credentials", f"must be an object of {', '.join(allowed)}" if allowed
                  else "this provider takes no credentials")
    for key, value in raw.items():
        if key not in allowed:
            raise bad("credentials", f"unknown field {key!r} (known: {', '.join(allowed)})")
        text = str(value)
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not text.strip() or len(text) > 500:
            raise bad("credentials", f"{key} must be a non-empty string")
    return secrets.seal(request.app[RUNTIME].settings.secret_key, {k: str(v) for k, v in raw.items()})


@operation("List inboxes (our numbers, WhatsApp numbers, mailboxes, chat sites)", roles=READ,
           query=(Param("channel", CHANNEL),), responses={200: array(INBOX)}, tags=("inboxes",))
async def list_inboxes(request: web.Request) -> web.Response:
    channel = q_choice(request, "channel", tuple(PROVIDERS))
    async with transaction(request, *READ) as tx:
        return respond(await inboxes.list_inboxes(tx.conn, channel))


@operation("One inbox", roles=READ, responses={200: INBOX}, tags=("inboxes",))
async def get_inbox(request: web.Request) -> web.Response:
    inbox_id = path_id(request)
    async with transaction(request, *READ) as tx:
        with refusals():
            return respond(await inboxes.get_inbox(tx.conn, inbox_id))


@operation("Add an inbox", roles=ADMIN, request=INBOX_NEW, tags=("inboxes",),
           description="Inbound to `address` is attributed to the inbox and replies leave from it. Without "
                       "`credentials` it sends with the provider's credentials from settings.",
           responses={201: INBOX, 409: {"type": "object"}, 422: {"type": "object"}})
async def create_inbox(request: web.Request) -> web.Response:
    data = await body(request)
    channel = data.get("channel")
    if channel not in PROVIDERS:
        raise bad("channel", f"must be one of {', '.join(PROVIDERS)}")
    provider = data.get("provider")
    if provider is not None and provider not in PROVIDERS[channel]:
        raise bad("provider", f"{channel} inboxes use {' or '.join(PROVIDERS[channel])}")
    provider = provider or PROVIDERS[channel][0]
    name = text_field(data, "name", max_len=200)
    address = text_field(data, "address", max_len=320)
    async with transaction(request, *ADMIN) as tx:
        with refusals():
            inbox = await inboxes.create_inbox(tx.conn, name=name, channel=channel, provider=provider,
                                               address=address, **_fields(request, data, provider))
        await actions.audit(tx.conn, tx.actor, "inbox_create", details={"inbox_id": inbox["id"]})
    return respond(inbox, status=201)


@operation("Change an inbox (null clears a field); giving a default inbox an address detaches it from settings",
           roles=ADMIN, request=INBOX_PATCH, tags=("inboxes",),
           responses={200: INBOX, 409: {"type": "object"}, 422: {"type": "object"}})
async def patch_inbox(request: web.Request) -> web.Response:
    inbox_id = path_id(request)
    data = await body(request)
    changes: dict = {}
    if "name" in data:
        changes["name"] = text_field(data, "name", max_len=200)
    if "address" in data:
        changes["address"] = text_field(data, "address", max_len=320)
    if "provider" in data:
        if data["provider"] not in {p for ps in PROVIDERS.values() for p in ps}:
            raise bad("provider", "unknown provider")
        changes["provider"] = data["provider"]
    async with transaction(request, *ADMIN) as tx:
        with refusals():
            provider = changes.get("provider") or (await inboxes.get_inbox(tx.conn, inbox_id))["provider"]
            inbox = await inboxes.update_inbox(tx.conn, inbox_id, **changes, **_fields(request, data, provider))
        await actions.audit(tx.conn, tx.actor, "inbox_update", details={"inbox_id": inbox_id})
    return respond(inbox)


@operation("Delete an inbox (not a channel's default); its messages keep their history", roles=ADMIN,
           tags=("inboxes",), responses={204: None, 409: {"type": "object"}})
async def delete_inbox(request: web.Request) -> web.Response:
    inbox_id = path_id(request)
    async with transaction(request, *ADMIN) as tx:
        with refusals():
            await inboxes.delete_inbox(tx.conn, inbox_id)
        await actions.audit(tx.conn, tx.actor, "inbox_delete", details={"inbox_id": inbox_id})
    return web.Response(status=204)


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/inboxes", list_inboxes)
    r.add_post("/api/v1/inboxes", create_inbox)
    r.add_get("/api/v1/inboxes/{id}", get_inbox)
    r.add_patch("/api/v1/inboxes/{id}", patch_inbox)
    r.add_delete("/api/v1/inboxes/{id}", delete_inbox)
