"""Consent in the API: a contact's answers (record one with its proof, read state and history) and
bulk import of existing lists. The rules and writes are gateway.domain.consent's."""
from __future__ import annotations

from aiohttp import web

from gateway.domain import consent, identity, preferences
from gateway.http import inbox_schemas as S
from gateway.http.errors import ApiError
from gateway.http.inbox_common import (ACT, ADMIN, READ, bad, body, parse_time, path_id, respond, storable, text_field,
                                       transaction)
from gateway.http.keys import RUNTIME
from gateway.http.openapi import operation
from gateway.inbox import actions
from gateway.inbox.scope import visible_contact

MAX_PROOF_BYTES = 16_000
MAX_IMPORT = 1000
RECORD_CHANNELS = consent.RECORD_CHANNELS


def _answer(data: dict) -> dict:
    """The validated common fields of one answer (400 naming the field)."""
    channel = data.get("channel")
    if channel not in RECORD_CHANNELS:
        raise bad("channel", f"must be one of {', '.join(RECORD_CHANNELS)}")
    purpose = data.get("purpose")
    if purpose not in consent.RECORD_PURPOSES:
        raise bad("purpose", f"must be one of {', '.join(consent.RECORD_PURPOSES)}")
    granted = data.get("granted")
    if not isinstance(granted, bool):
        raise bad("granted", "must be true or false")
    source = text_field(data, "source", max_len=200)
    proof = data.get("proof")
    if proof is not None and (not isinstance(proof, dict) or len(str(proof)) > MAX_PROOF_BYTES):
        raise bad("proof", f"must be an object (at most {MAX_PROOF_BYTES} bytes)")
    if granted and not proof:
        raise bad("proof", "an opt-in needs its proof: the text shown, the form or page, the IP, ...")
    storable("proof", proof)
    return {"channel": consent.ANY_CHANNEL if channel == "all" else channel, "purpose": purpose,
            "granted": granted, "source": source, "proof": proof}


async def _view(request: web.Request, conn, contact_id: int) -> dict:
    regimes = request.app[RUNTIME].settings.consent_regimes
    return {"consents": await consent.contact_consents(conn, contact_id),
            "current": await consent.contact_state(conn, contact_id, regimes),
            "history": await consent.contact_history(conn, contact_id)}


@operation("A contact's consent: each address's latest answer per channel and purpose (consents), whether "
           "each channel and purpose may be sent now under its regime (current), and every answer with "
           "source and proof (history)", roles=READ, responses={200: S.CONSENTS})
async def get_consent(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    async with transaction(request, *READ) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        return respond(await _view(request, tx.conn, contact_id))


@operation("Record an opt-in or opt-out of a contact for a channel ('all': every channel) and purpose, "
           "with its source and proof, on every address of the contact on that channel (or `address`)",
           roles=ACT, request=S.CONSENT_BODY, responses={201: S.CONSENT_RECORDED, 422: {"type": "object"}})
async def post_consent(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    data = await body(request)
    answer = _answer(data)
    address = text_field(data, "address", required=False, max_len=320)
    async with transaction(request, *ACT) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        recorded = await consent.record_for_contact(tx.conn, contact_id, address=address, **answer)
        if not recorded:
            raise ApiError(422, "no_address", f"contact {contact_id} has no address for {data['channel']}"
                           + (f" matching {address}" if address else ""))
        await actions.audit(tx.conn, tx.actor, "consent_record", contact_id=contact_id,
                            details={**{k: v for k, v in answer.items() if k != "proof"},
                                     "addresses": len(recorded)})
        out = await _view(request, tx.conn, contact_id)
    out["recorded"] = [{"address_kind": k, "address": a} for k, a in recorded]
    return respond(out, status=201)


def _import_item(item) -> dict:
    if not isinstance(item, dict):
        raise bad("record", "must be an object")
    answer = _answer(item)
    kind = item.get("kind")
    if kind not in identity.CONSENT_KINDS:
        raise bad("kind", "must be " + " or ".join((", ".join(identity.CONSENT_KINDS[:-1]), identity.CONSENT_KINDS[-1])))
    raw = text_field(item, "address", max_len=320)
    try:
        address = (identity.normalize_phone(raw) if kind == "phone" else identity.normalize_email(raw)
                   if kind == "email" else raw.strip())
    except identity.AddressError as exc:
        raise bad("address", str(exc)) from None
    if answer["channel"] != consent.ANY_CHANNEL and \
            answer["channel"] not in [c.value for c in identity.channels_for_kind(kind)]:
        raise bad("channel", f"a {kind} address is not reached on {answer['channel']}")
    at = parse_time("at", item["at"]) if item.get("at") is not None else None
    return {**answer, "kind": kind, "address": address, "at": at}


@operation("Import consent answers of existing lists (by address; `at` keeps the original time). Every "
           "record is checked first: one bad record answers 400 naming each and stores nothing",
           roles=ADMIN, request=S.CONSENT_IMPORT, responses={200: S.CONSENT_IMPORTED})
async def import_consent(request: web.Request) -> web.Response:
    data = await body(request)
    records = data.get("records")
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_IMPORT:
        raise bad("records", f"must be a list of 1 to {MAX_IMPORT} records")
    items, errors = [], []
    for i, raw in enumerate(records):
        try:
            items.append(_import_item(raw))
        except ApiError as exc:
            errors.append({"index": i, "message": exc.message})
    if errors:
        raise ApiError(400, "invalid_records", f"{len(errors)} of {len(records)} records are invalid; "
                       "nothing was imported", errors=errors[:100])
    applied = 0
    async with transaction(request, *ADMIN) as tx:
        for item in items:
            applied += await consent.set_consent(tx.conn, **item)
        await actions.audit(tx.conn, tx.actor, "consent_import", details={"records": len(items), "applied": applied})
    return respond({"imported": len(items), "applied": applied, "history_only": len(items) - applied})


@operation("A signed, expiring link to the contact's preference page (GATEWAY_PREFERENCES_LINK_HOURS), to "
           "send the customer", roles=ACT, request_required=False, responses={201: S.PREFERENCES_LINK})
async def preferences_link(request: web.Request) -> web.Response:
    contact_id = path_id(request)
    async with transaction(request, *ACT) as tx:
        await visible_contact(tx.conn, tx.scope, contact_id)
        await actions.audit(tx.conn, tx.actor, "preferences_link", contact_id=contact_id)
    return respond(preferences.link_for(request.app[RUNTIME].settings, contact_id), status=201)


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/contacts/{id}/consent", get_consent)
    r.add_post("/api/v1/contacts/{id}/consent", post_consent)
    r.add_post("/api/v1/consent/import", import_consent)
    r.add_post("/api/v1/contacts/{id}/preferences-link", preferences_link)
