"""Contacts in the API: create, list with search and keyset paging, add and remove identities.
(View, edit, merge, export and erase are in inbox_contacts; the operations in gateway.inbox.contact_ops.)"""
from __future__ import annotations

from aiohttp import web

from gateway.domain import contacts, inputs
from gateway.domain.identity import parse_identity
from gateway.http import inbox_schemas as S
from gateway.http.inbox_common import ACT, READ, bad, body, path_id, q_int, q_text, respond, storable, transaction
from gateway.http.inbox_contacts import MAX_ATTRIBUTES_BYTES, enqueue_after_merge, profile_fields
from gateway.http.openapi import Param, operation
from gateway.inbox import actions, contact_ops, queries
from gateway.inbox.scope import visible_contact

MAX_IDENTITIES = 20


def _identity(data, where: str = "") -> tuple[str, str]:
    if not isinstance(data, dict):
        raise bad(where or "identity", "must be an object with kind and address")
    try:
        return parse_identity(data.get("kind"), data.get("address"))
    except ValueError as exc:
        raise bad(f"{where}kind" if "kind must" in str(exc) else f"{where}address", str(exc)) from None


@operation("Create a contact with a name, attributes and identities (an identity another contact owns: 409 "
           "naming it)", roles=ACT, request=S.CONTACT_CREATE, responses={201: S.CONTACT, 409: {"type": "object"}})
async def create_contact(request: web.Request) -> web.Response:
    data = await body(request)
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise bad("name", "must be a string of at most 200 characters, or null")
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict) or len(str(attributes)) > MAX_ATTRIBUTES_BYTES:
        raise bad("attributes", f"must be an object (at most {MAX_ATTRIBUTES_BYTES} bytes)")
    storable("attributes", attributes)
    storable("name", name)
    raw = data.get("identities", [])
    if not isinstance(raw, list) or len(raw) > MAX_IDENTITIES:
        raise bad("identities", f"must be a list of at most {MAX_IDENTITIES} identities")
    identities = list(dict.fromkeys(_identity(item, f"identities[{i}].") for i, item in enumerate(raw)))
    profile = profile_fields(data)
    async with transaction(request, *ACT) as tx:
        if not tx.scope.everything and not identities:
            raise bad("identities", "an agent creates contacts with at least one identity")
        contact_id = await contact_ops.create_contact(tx.conn, name=name, attributes=attributes,
                                                      identities=identities, **profile)
        await actions.audit(tx.conn, tx.actor, "contact_create", contact_id=contact_id,
                            details={"identities": len(identities)})
        return respond(await queries.contact_detail(tx.conn, contact_id), status=201)


@operation("Contacts, newest first: search by name, external id, attributes or address prefix; keyset paging",
           roles=READ, query=(Param("q", {"type": "string", "maxLength": 200}),
                              Param("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                              Param("cursor", {"type": "string", "maxLength": 20}, "next_cursor of the previous page")),
           responses={200: S.CONTACT_PAGE})
async def list_contacts(request: web.Request) -> web.Response:
    q = q_text(request, "q")
    limit = q_int(request, "limit", default=50, lo=1, hi=200)
    cursor = q_text(request, "cursor", max_len=20)
    try:
        before = inputs.digits_id(cursor, "cursor") if cursor is not None else None
    except inputs.InputError:
        raise bad("cursor", "is not a cursor this API gave") from None
    async with transaction(request, *READ) as tx:
        page = await contact_ops.list_contacts(tx.conn, tx.scope, q=q.strip() if q and q.strip() else None,
                                               before_id=before, limit=limit)
    next_cursor = str(page[-1]["id"]) if len(page) == limit else None
    return respond({"contacts": page, "next_cursor": next_cursor})


@operation("Add an identity to a contact; one that another contact owns answers 409 naming it, or with "
           "\"merge\": true merges that contact into this one", roles=ACT, request=S.IDENTITY_BODY,
           responses={200: S.CONTACT, 201: S.CONTACT, 409: {"type": "object"}, 422: {"type": "object"}})
async def add_identity(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    data = await body(request)
    kind, address = _identity(data)
    merge = data.get("merge", False)
    if not isinstance(merge, bool):
        raise bad("merge", "must be true or false")
    async with transaction(request, *ACT) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        if merge:   # the other contact must be one the caller may see too
            owner = await contacts.owner_of(tx.conn, kind, address)
            if owner is not None and owner != contact_id:
                await visible_contact(tx.conn, tx.scope, owner)
        result = await contact_ops.add_identity(tx.conn, contact_id, kind, address, merge=merge, effects=tx.effects)
        if result["added"] or result["merged"]:
            await actions.audit(tx.conn, tx.actor, "identity_add", contact_id=contact_id,
                                details={"kind": kind, "merged": result["merged"]})
        out = await queries.contact_detail(tx.conn, contact_id)
    if result["merged"]:
        out["merged"] = result["merged"]
        await enqueue_after_merge(request, result["merged"])
    return respond(out, status=201 if result["added"] or result["merged"] else 200)


@operation("Remove one of a contact's identities (its last one stays: erase the contact instead)", roles=ACT,
           request=S.IDENTITY_BODY, responses={200: S.CONTACT, 422: {"type": "object"}})
async def remove_identity(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    kind, address = _identity(await body(request))
    async with transaction(request, *ACT) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        await contact_ops.remove_identity(tx.conn, contact_id, kind, address)
        await actions.audit(tx.conn, tx.actor, "identity_remove", contact_id=contact_id, details={"kind": kind})
        return respond(await queries.contact_detail(tx.conn, contact_id))


def register(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/contacts", create_contact)
    r.add_get("/api/v1/contacts", list_contacts)
    r.add_post("/api/v1/contacts/{id}/identities", add_identity)
    r.add_delete("/api/v1/contacts/{id}/identities", remove_identity)
