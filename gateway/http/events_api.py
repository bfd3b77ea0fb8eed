"""Business events API (journey triggers) and journey metrics.

POST /api/v1/events            integration/admin. One event, or {"events": [...]} (up to 1,000):
    {"event_id": "evt-123",                  # idempotency key: the same id is stored once
     "name": "cart_abandoned",
     "contact": {"external_id"|"phone"|"email"|"contact_id": ..., "name": ...,
                 "attributes": {...}, "locale": "es", "timezone": "Europe/Madrid"},
     "properties": {...}, "occurred_at": "2025-01-31T10:00:00Z"}
  A batch is validated as a whole before anything is stored (400 names the index and field) and
  stored in one transaction. Answers 201 (single, new), 200 (single duplicate, or a batch).
GET /api/v1/events?contact_id=&name=&limit=   a contact's events, newest first
GET /api/v1/journeys                         the loaded journey definitions
GET /api/v1/journeys/{name}/stats            entered, sent, delivered, read, replied, converted, ...
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from gateway.domain import contacts, inputs, thread
from gateway.domain.events import EVENT_NAME, contact_events, record_event
from gateway.http.access import principal
from gateway.http.body import read_json
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME
from gateway.http.openapi import ID, TIME, Param, array, obj, operation
from gateway.inbox import NotFound
from gateway.inbox.scope import scope_for, visible_contact
from gateway.journeys import guards
from gateway.journeys.engine import ENTRY_TRACE
from gateway.journeys.model import NAME
from gateway.journeys.registry import JourneyRegistry, load_registry
from gateway.journeys.stats import has_enrollments, journey_stats

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_ATTRIBUTES_BYTES = 16 * 1024
REGISTRY = web.AppKey("journey_registry", JourneyRegistry)
READERS = ("agent", "readonly", "integration")


_STR = {"type": "string"}
_CONTACT = obj(None, contact_id=ID, external_id=_STR, phone=_STR, email=_STR, name=_STR,
               attributes={"type": "object"}, locale={"type": "string", "minLength": 2, "maxLength": 20},
               timezone={"type": "string", "description": "IANA zone, e.g. Europe/Madrid"})
_EVENT = obj(["event_id", "name", "contact"], event_id={"type": "string", "minLength": 1, "maxLength": 200},
             name={"type": "string", "pattern": EVENT_NAME.pattern}, contact=_CONTACT,
             properties={"type": "object"}, occurred_at=TIME)
_STORED = obj(["id", "event_id", "contact_id", "duplicate"], id=ID, event_id=_STR, contact_id=ID,
              duplicate={"type": "boolean"},
              journeys=array(obj(["journey", "entered"], journey=_STR, entered={"type": "boolean"},
                                 reason={"type": "string", "nullable": True},
                                 description="with ?debug=true: whether each journey started, and why not")))
_BATCH_RESULT = obj(["accepted", "duplicates", "results"], accepted={"type": "integer"},
                    duplicates={"type": "integer"}, results=array(_STORED))
_COUNTS = {"type": "integer", "minimum": 0}
_STEP_STATS = obj(None, queued=_COUNTS, sent=_COUNTS, delivered=_COUNTS, read=_COUNTS, replied=_COUNTS,
                  clicked=_COUNTS, failed=_COUNTS, converted=_COUNTS, exited=_COUNTS,
                  suppressed={"type": "object", "additionalProperties": _COUNTS})
_STATS = obj(["journey", "totals", "steps", "variants", "generated_at"], journey=_STR,
             totals=obj(["entered", "active", "completed", "converted", "exited", "sent", "delivered", "read",
                         "replied", "suppressed"], entered=_COUNTS, active=_COUNTS, completed=_COUNTS,
                        converted=_COUNTS, exited=_COUNTS, queued=_COUNTS, sent=_COUNTS, delivered=_COUNTS,
                        read=_COUNTS, replied=_COUNTS, clicked=_COUNTS, failed=_COUNTS,
                        suppressed={"type": "object", "additionalProperties": _COUNTS}),
             steps={"type": "object", "additionalProperties": _STEP_STATS},
             variants={"type": "object", "additionalProperties": obj(["entered", "converted"], entered=_COUNTS,
                                                                     converted=_COUNTS)},
             generated_at=TIME)
_EVENT_ITEM = obj(["id", "event_id", "name", "properties", "occurred_at", "source", "created_at"], id=ID,
                  event_id=_STR, name=_STR, properties={"type": "object"}, occurred_at=TIME,
                  source={"type": "string", "nullable": True}, created_at=TIME)
_JOURNEY = obj(["name", "version", "priority", "purpose", "entry_event", "steps"], name=_STR, version=_STR,
               description=_STR, priority={"type": "integer"}, purpose=_STR, entry_event=_STR,
               goal_event={"type": "string", "nullable": True}, steps=array(_STR))


@dataclass(frozen=True)
class EventIn:
    event_id: str
    name: str
    ref: contacts.ContactRef
    properties: dict
    occurred_at: datetime | None
    attributes: dict | None
    locale: str | None
    timezone: str | None


def _bad(where: str, field: str, message: str, index: int | None) -> ApiError:
    extra = {"field": field} if index is None else {"index": index, "field": field}
    return ApiError(400, "invalid_field", f"{where}{field}: {message}", **extra)


def _json_size(value) -> int:
    """Bytes of JSON. (What PostgreSQL cannot store never gets here: read_json refuses it.)"""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def parse_event(item, index: int | None) -> EventIn:
    where = "" if index is None else f"events[{index}]."
    if not isinstance(item, dict):
        raise _bad(where.rstrip("."), "", "each event must be an object", index)
    event_id = item.get("event_id")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 200:
        raise _bad(where, "event_id", "a non-empty string (max 200 chars) is required", index)
    name = item.get("name")
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        raise _bad(where, "name", "an event name (letters, digits, _ . : -, max 100) is required", index)
    properties = item.get("properties", {})
    if not isinstance(properties, dict):
        raise _bad(where, "properties", "must be an object", index)
    if _json_size(properties) > MAX_PROPERTIES_BYTES:
        raise _bad(where, "properties", f"must be at most {MAX_PROPERTIES_BYTES} bytes of JSON", index)
    occurred_at = None
    if item.get("occurred_at") is not None:
        try:
            occurred_at = inputs.timestamp(item["occurred_at"], "occurred_at")
        except inputs.InputError as exc:
            raise _bad(where, "occurred_at", exc.reason, index) from None
    contact = item.get("contact")
    if isinstance(contact, dict):
        for key in ("phone", "email", "name"):
            if contact.get(key) is not None and not isinstance(contact[key], str):
                raise _bad(where, f"contact.{key}", "must be a string", index)
    try:
        ref = contacts.ContactRef.parse(contact)
    except contacts.ContactRefError as exc:
        raise _bad(where, "contact", str(exc), index) from None
    attributes = contact.get("attributes")
    if attributes is not None and (not isinstance(attributes, dict)
                                   or _json_size(attributes) > MAX_ATTRIBUTES_BYTES):
        raise _bad(where, "contact.attributes", f"must be an object of at most {MAX_ATTRIBUTES_BYTES} bytes", index)
    locale = contact.get("locale")
    if locale is not None and (not isinstance(locale, str) or not 2 <= len(locale) <= 20):
        raise _bad(where, "contact.locale", "must be a locale like en or pt_BR", index)
    tz = contact.get("timezone")
    if tz is not None and guards.zone(tz if isinstance(tz, str) else None) is None:
        raise _bad(where, "contact.timezone", "must be an IANA time zone like Europe/Madrid", index)
    return EventIn(event_id.strip(), name, ref, properties, occurred_at, attributes, locale, tz)


async def _store(conn: asyncpg.Connection, runtime: Runtime, ev: EventIn, index: int | None,
                 effects: thread.Effects) -> dict:
    try:
        contact_id = await contacts.resolve(conn, ev.ref)
    except contacts.ContactRefError as exc:
        raise _bad("" if index is None else f"events[{index}].", "contact", str(exc), index) from None
    if ev.attributes or ev.locale or ev.timezone:
        await contacts.merge_attributes(conn, contact_id, ev.attributes or {}, locale=ev.locale, timezone=ev.timezone)
    row, created = await record_event(
        conn, runtime, contact_id=contact_id, name=ev.name, properties=ev.properties,
        occurred_at=ev.occurred_at or runtime.clock.now(), event_key=ev.event_id, source="api", effects=effects)
    return {"id": row["id"], "event_id": ev.event_id, "contact_id": row["contact_id"], "duplicate": not created}


def _registry(request: web.Request) -> JourneyRegistry:
    """The journeys in force: the engine's (it follows live deploys), else the files'."""
    engine = request.app[RUNTIME].journeys
    return engine.registry if engine is not None else request.app[REGISTRY]


@operation("Business events (journey triggers): one, or a batch of up to 1,000; idempotent by event_id",
           roles=("integration",), tags=("events",),
           query=(Param("debug", {"type": "boolean"},
                        description="answer, per event, whether each journey started and why not"),),
           request={"oneOf": [_EVENT, obj(["events"], events=array(_EVENT, minItems=1, maxItems=MAX_BATCH))]},
           responses={201: _STORED, 200: {"oneOf": [_STORED, _BATCH_RESULT]}},
           description="A batch is validated as a whole before anything is stored; a 400 names the index "
                       "and field. Unknown contacts are created.")
async def post_events(request: web.Request) -> web.Response:
    await principal(request, "integration")
    runtime = request.app[RUNTIME]
    data = await read_json(request)
    batch = "events" in data
    if batch:
        items = data["events"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise ApiError(400, "invalid_field", f"events must be a list of 1 to {MAX_BATCH} events",
                           field="events")
        parsed = [parse_event(item, i) for i, item in enumerate(items)]
    else:
        parsed = [parse_event(data, None)]
    effects = thread.Effects()
    trace: list | None = [] if request.query.get("debug") in ("1", "true") else None
    token = ENTRY_TRACE.set(trace)
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            results = [await _store(conn, runtime, ev, i if batch else None, effects)
                       for i, ev in enumerate(parsed)]
    finally:
        ENTRY_TRACE.reset(token)
    await runtime.publish_effects(effects)
    if trace is not None:
        for r in results:
            r["journeys"] = [{k: t[k] for k in ("journey", "entered", "reason")} for t in trace
                             if t["event_id"] == r["id"]]
    if not batch:
        return web.json_response(results[0], status=200 if results[0]["duplicate"] else 201)
    duplicates = sum(r["duplicate"] for r in results)
    return web.json_response({"accepted": len(results) - duplicates, "duplicates": duplicates, "results": results})


@operation("A contact's business events, newest first (404 for a contact the caller may not see; "
           "integration tokens need the events:read scope)", roles=("agent", "readonly"), tags=("events",),
           query=(Param("contact_id", ID, required=True), Param("name", {"type": "string", "maxLength": 100}),
                  Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})),
           responses={200: obj(["events"], events=array(_EVENT_ITEM)), 404: {"type": "object"}})
async def list_events(request: web.Request) -> web.Response:
    who = await principal(request, "agent", "readonly", scope="events:read")
    q = request.query
    if "contact_id" not in q:
        raise ApiError(400, "invalid_field", "contact_id (a number) is required", field="contact_id")
    contact_id = inputs.digits_id(q["contact_id"], "contact_id")
    limit = min(max(inputs.digits_int(q.get("limit", "100"), "limit"), 1), 1000)
    inputs.check_text(q.get("name", ""), "name")
    async with request.app[RUNTIME].pool.acquire() as conn:
        try:   # the contact's visibility rule: 404 for a contact the caller may not see
            await visible_contact(conn, await scope_for(conn, who), contact_id)
        except NotFound:
            raise ApiError(404, "not_found", "no such contact") from None
        rows = await contact_events(conn, contact_id, name=q.get("name"), limit=limit)
    return web.json_response({"events": [
        {"id": r["id"], "event_id": r["event_key"], "name": r["name"], "properties": r["properties"],
         "occurred_at": r["occurred_at"].isoformat(), "source": r["source"],
         "created_at": r["created_at"].isoformat()} for r in rows]})


@operation("The journey definitions loaded from flows/journeys", roles=READERS, tags=("journeys",),
           responses={200: obj(["journeys"], journeys=array(_JOURNEY))})
async def list_journeys(request: web.Request) -> web.Response:
    await principal(request, *READERS)
    return web.json_response({"journeys": [
        {"name": j.name, "version": j.version, "description": j.description, "priority": j.priority,
         "purpose": j.purpose, "entry_event": j.entry.event, "goal_event": j.goal.event if j.goal else None,
         "steps": list(j.steps)} for j in _registry(request).journeys.values()]})


@operation("Journey metrics per journey and step: entered, sent, delivered, read, replied, converted, "
           "exited, suppressed by reason", roles=("agent", "readonly"), tags=("journeys",),
           path_params={"name": {"type": "string", "pattern": NAME.pattern}}, responses={200: _STATS})
async def get_stats(request: web.Request) -> web.Response:
    await principal(request, "agent", "readonly")
    name = request.match_info["name"]
    if not NAME.match(name):
        raise ApiError(404, "not_found", f"no journey named {name!r}")
    async with request.app[RUNTIME].pool.acquire() as conn:
        known = _registry(request).current(name) is not None or await has_enrollments(conn, name)
        if not known:
            raise ApiError(404, "not_found", f"no journey named {name!r}")
        stats = await journey_stats(conn, name)
    stats["generated_at"] = datetime.now(timezone.utc).isoformat()
    return web.json_response(stats)


def register(app: web.Application) -> None:
    app[REGISTRY] = load_registry(app[RUNTIME].settings)
    app.router.add_post("/api/v1/events", post_events)
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_get("/api/v1/journeys", list_journeys)
    app.router.add_get("/api/v1/journeys/{name}/stats", get_stats)
