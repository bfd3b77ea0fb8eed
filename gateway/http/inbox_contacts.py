"""Contacts in the inbox API: view, edit attributes, merge, export, erase; and search."""
from __future__ import annotations

from aiohttp import web

from gateway.domain import contacts
from gateway.http import inbox_schemas as S
from gateway.http.inbox_common import (ACT, ADMIN, READ, bad, body, id_field, path_id, q_choice, q_int, q_text, respond,
                                       storable, transaction)
from gateway.http.keys import RUNTIME
from gateway.http.openapi import Param, operation
from gateway.inbox import actions, merge, privacy, queries, search
from gateway.inbox.scope import visible_contact
from gateway.journeys import guards
from gateway.journeys.stats import contact_journeys
from gateway.pipeline import queue

MAX_ATTRIBUTES_BYTES = 32_000


def profile_fields(data: dict) -> dict:
    """`locale` and `timezone` given in a body (null clears), checked: what flows, journeys (quiet
    hours, template language) and routing read from the contact."""
    out = {}
    if "locale" in data:
        locale = data["locale"]
        if locale is not None and (not isinstance(locale, str) or not 2 <= len(locale) <= 20
                                   or not locale.replace("_", "").replace("-", "").isalnum()):
            raise bad("locale", "must be a locale like en or pt_BR, or null")
        out["locale"] = locale.replace("-", "_") if locale else None
    if "timezone" in data:
        tz = data["timezone"]
        if tz is not None and guards.zone(tz if isinstance(tz, str) else None) is None:
            raise bad("timezone", "must be an IANA time zone like Europe/Madrid, or null")
        out["timezone"] = tz
    return out


@operation("A contact: identities on every channel, attributes, its conversation", roles=READ,
           responses={200: S.CONTACT})
async def get_contact(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    async with transaction(request, *READ) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        return respond(await queries.contact_detail(tx.conn, contact_id))


@operation("The journeys a contact is in or went through (status, current step, exit or conversion)",
           roles=READ, responses={200: S.CONTACT_JOURNEYS})
async def get_journeys(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    async with transaction(request, *READ) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        return respond({"journeys": await contact_journeys(tx.conn, contact_id)})


@operation("Edit a contact's name and attributes (attributes are merged; null removes a key)", roles=ACT,
           request=S.CONTACT_PATCH, responses={200: S.CONTACT})
async def patch_contact(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    data = await body(request)
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict) or len(str(attributes)) > MAX_ATTRIBUTES_BYTES:
        raise bad("attributes", f"must be an object (at most {MAX_ATTRIBUTES_BYTES} bytes)")
    storable("attributes", attributes)
    name_given = "name" in data
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise bad("name", "must be a string of at most 200 characters, or null")
    storable("name", name)
    profile = profile_fields(data)
    set_attrs = {k: v for k, v in attributes.items() if v is not None}
    drop = [k for k, v in attributes.items() if v is None]
    async with transaction(request, *ACT) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        await contacts.edit(tx.conn, contact_id, set_attributes=set_attrs, remove_attributes=drop,
                            name=name if name_given else contacts.KEEP, **profile)
        await actions.audit(tx.conn, tx.actor, "contact_update", contact_id=contact_id,
                            details={"attributes_set": sorted(set_attrs), "attributes_removed": drop,
                                     "name_changed": name_given, "profile": sorted(profile)})
        return respond(await queries.contact_detail(tx.conn, contact_id))


@operation("Merge another contact into this one (threads merged in time order, identities moved)",
           roles=ACT, request=S.MERGE_BODY, responses={200: S.MERGED, 422: {"type": "object"}})
async def merge_contact(request: web.Request) -> web.Response:
    target = path_id(request)
    source = id_field(await body(request), "contact_id")
    async with transaction(request, *ACT) as tx:
        await visible_contact(tx.conn, tx.scope, target)
        await visible_contact(tx.conn, tx.scope, source)
        result = await merge.merge_contacts(tx.conn, target, source, tx.effects)
        await actions.audit(tx.conn, tx.actor, "contact_merge", contact_id=target,
                            conversation_id=result["conversation_id"], details=result)
    await enqueue_after_merge(request, result)
    return respond(result)


async def enqueue_after_merge(request: web.Request, result: dict) -> None:
    """Inbound of the merged contact not processed yet now waits in the target's conversation."""
    if result["conversation_id"] is None:
        return
    rt = request.app[RUNTIME]
    await queue.enqueue_or_log(rt.redis, rt.keys, [result["conversation_id"]], why="contacts merged")


@operation("Export everything held about a contact (JSON)", roles=ADMIN, responses={200: S.EXPORT})
async def export_contact(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    async with transaction(request, *ADMIN) as tx:
        data = await privacy.export_contact(tx.conn, contact_id)
        await actions.audit(tx.conn, tx.actor, "contact_export", contact_id=contact_id)
    return respond(data)


@operation("Erase a contact on request (content redacted, identities removed; opted-out addresses "
           "stay suppressed by hash)", roles=ADMIN, responses={200: S.ERASED})
async def erase_contact(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    async with transaction(request, *ADMIN) as tx:
        result = await privacy.erase_contact(tx.conn, contact_id, tx.effects)
        await actions.audit(tx.conn, tx.actor, "contact_erase", contact_id=contact_id,
                            conversation_id=result["conversation_id"],
                            details={k: v for k, v in result.items() if k != "contact_id"})
    return respond(result)


@operation("Search messages (full text) and contacts (name, attributes, address prefix)", roles=READ,
           query=(Param("q", {"type": "string", "minLength": 1, "maxLength": 200}, required=True),
                  Param("type", {"type": "string", "enum": ["all", "messages", "contacts"]}),
                  Param("limit", {"type": "integer", "minimum": 1, "maximum": 100})),
           responses={200: S.SEARCH})
async def search_all(request: web.Request) -> web.Response:
    q = q_text(request, "q")
    if not q or not q.strip():
        raise bad("q", "is required")
    kind = q_choice(request, "type", ("all", "messages", "contacts"), "all")
    limit = q_int(request, "limit", default=20, lo=1, hi=100)
    out: dict = {"messages": [], "contacts": []}
    async with transaction(request, *READ) as tx:
        if kind in ("all", "messages"):
            out["messages"] = await search.search_messages(tx.conn, tx.scope, q, limit=limit)
        if kind in ("all", "contacts"):
            out["contacts"] = await search.search_contacts(tx.conn, tx.scope, q, limit=limit)
    return respond(out)


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/contacts/{id}", get_contact)
    r.add_get("/api/v1/contacts/{id}/journeys", get_journeys)
    r.add_patch("/api/v1/contacts/{id}", patch_contact)
    r.add_post("/api/v1/contacts/{id}/merge", merge_contact)
    r.add_get("/api/v1/contacts/{id}/export", export_contact)
    r.add_post("/api/v1/contacts/{id}/erase", erase_contact)
    r.add_get("/api/v1/search", search_all)
