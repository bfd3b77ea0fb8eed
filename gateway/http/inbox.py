"""The shared inbox API under /api/v1: conversations, what agents do with them, the history.

Roles: admin may do everything; agents act on the conversations their teams see (see
gateway.inbox.scope); read-only tokens read everything and change nothing; integration tokens
cannot read the inbox. A conversation the caller may not see answers 404, exactly like one that
does not exist.
"""
from __future__ import annotations

from aiohttp import web

from gateway.channels.modes import routing_policy
from gateway.domain import routing, thread
from gateway.domain.types import Attachment, Channel, Purpose
from gateway.http import inbox_admin, inbox_consent, inbox_contacts, inbox_people
from gateway.http import inbox_schemas as S
from gateway.http import stream, uploads
from gateway.http.access import principal
from gateway.http.errors import ApiError
from gateway.http.inbox_common import (ACT, READ, bad, body, id_field, parse_time, path_id, q_bool, q_choice, q_int,
                                       q_text, respond, storable, text_field, transaction)
from gateway.http.keys import RUNTIME
from gateway.http.openapi import ID, TIME, Param, operation
from gateway.inbox import Invalid, actions, canned, queries
from gateway.inbox.scope import visible_conversation

DEFAULT_CSAT = "How would you rate the help you received? Reply with a number from 1 (poor) to 5 (great)."
LIST_QUERY = (
    Param("status", {"type": "string", "enum": list(queries.STATUSES)}),
    Param("mode", {"type": "string", "enum": list(queries.MODES)}),
    Param("assignee_id", ID), Param("unassigned", {"type": "boolean"}), Param("team_id", ID),
    Param("channel", {"type": "string", "enum": S.CHANNELS}, "the channel the customer last wrote from"),
    Param("inbox_id", ID, "the inbox the customer last wrote to"),
    Param("label", {"type": "string", "maxLength": 50}),
    Param("waiting_since_before", TIME, "only conversations waiting since at least this time"),
    Param("sort", {"type": "string", "enum": list(queries.SORTS)}, "waiting: longest waiting first (default); newest"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
    Param("cursor", {"type": "string", "maxLength": 500}, "next_cursor of the previous page"),
)


@operation("List conversations (filters, sorting, keyset pagination)", roles=READ, query=LIST_QUERY,
           responses={200: S.CONVERSATION_PAGE})
async def list_conversations(request: web.Request) -> web.Response:
    waiting = request.query.get("waiting_since_before")
    f = queries.ConversationFilter(
        status=q_choice(request, "status", queries.STATUSES), mode=q_choice(request, "mode", queries.MODES),
        assignee_id=q_int(request, "assignee_id", lo=1), unassigned=q_bool(request, "unassigned"),
        team_id=q_int(request, "team_id", lo=1), channel=q_choice(request, "channel", tuple(S.CHANNELS)),
        inbox_id=q_int(request, "inbox_id", lo=1),
        label=q_text(request, "label", max_len=50),
        waiting_before=parse_time("waiting_since_before", waiting) if waiting else None,
        sort=q_choice(request, "sort", queries.SORTS, "waiting"))
    limit = q_int(request, "limit", default=25, lo=1, hi=100)
    cursor = q_text(request, "cursor", max_len=500)
    async with transaction(request, *READ) as tx:
        try:
            page, next_cursor = await queries.list_conversations(tx.conn, tx.scope, f, limit=limit, cursor=cursor)
        except Invalid as exc:
            raise bad("cursor", exc.message) from None
    return respond({"conversations": page, "next_cursor": next_cursor})


@operation("One conversation with its contact (all identities and attributes)", roles=READ,
           responses={200: S.CONVERSATION_DETAIL})
async def get_conversation(request: web.Request) -> web.Response:
    cid = path_id(request)
    async with transaction(request, *READ) as tx:
        return respond(await queries.conversation_detail(tx.conn, tx.scope, cid))


@operation("The thread across channels and episodes, by seq, paginated both ways", roles=READ,
           query=(Param("after_seq", {"type": "integer", "minimum": 0, "maximum": 2**62}, "forward from this seq"),
                  Param("before_seq", {"type": "integer", "minimum": 0, "maximum": 2**62}, "backward from this seq"),
                  Param("limit", {"type": "integer", "minimum": 1, "maximum": 200})),
           responses={200: S.MESSAGE_PAGE})
async def list_messages(request: web.Request) -> web.Response:
    cid = path_id(request)
    after = q_int(request, "after_seq", lo=0, hi=2**62)
    before = q_int(request, "before_seq", lo=0, hi=2**62)
    if after is not None and before is not None:
        raise bad("after_seq", "use after_seq or before_seq, not both")
    limit = q_int(request, "limit", default=50, lo=1, hi=200)
    async with transaction(request, *READ) as tx:
        return respond(await queries.list_messages(tx.conn, tx.scope, cid, after_seq=after, before_seq=before,
                                                   limit=limit))


@operation("Which channels a reply can use now, and why the others cannot", roles=READ,
           responses={200: S.CHANNEL_OPTIONS})
async def channel_options(request: web.Request) -> web.Response:
    cid = path_id(request)
    rt = request.app[RUNTIME]
    async with transaction(request, *READ) as tx:
        conv = await visible_conversation(tx.conn, tx.scope, cid)
        options = await thread.route_options(tx.conn, cid, purpose=Purpose.REPLY,
                                             policy=routing_policy(rt.settings))
    last = Channel(conv["last_inbound_channel"]) if conv["last_inbound_channel"] else None
    default = routing.choose_route(options, explicit=None, last_inbound_channel=last)
    return respond({
        "available": [{"channel": r.channel.value, "address": r.address, "needs_template": r.needs_template}
                      for r in options.routes.values()],
        "unavailable": {c.value: reason for c, reason in options.unavailable.items()},
        "default": default.channel.value if default else None})


def _attachments(data: dict, settings) -> tuple[Attachment, ...]:
    raw = data.get("attachments") or []
    if not isinstance(raw, list) or len(raw) > 10:
        raise bad("attachments", "must be a list of at most 10 attachments")
    out = []
    for i, a in enumerate(raw):
        url = a.get("url") if isinstance(a, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
            raise bad(f"attachments[{i}].url", "must be an http(s) URL")
        out.append(Attachment(url=storable("attachments", url),
                              content_type=text_field(a, "content_type", required=False, max_len=200),
                              filename=text_field(a, "filename", required=False, max_len=300),
                              content_ref=uploads.own_media_ref(settings, url)))
    return tuple(out)


@operation("Reply to the customer (channel chosen automatically or explicitly)", roles=ACT,
           description="It leaves from the inbox the customer last wrote to on that channel, or from "
                       "`inbox_id` (an inbox without a team or of one of the agent's teams; it picks the channel). "
                       "Idempotent with an `Idempotency-Key` header: a retry returns the first message "
                       "(200, duplicate true). 409 `no_route` lists, per channel, why it cannot be used "
                       "(opted_out, whatsapp_window_closed, no_address, ...).",
           request=S.REPLY_BODY, headers=(Param("Idempotency-Key", {"type": "string", "maxLength": 200},
                                                 where="header"),),
           responses={201: S.SENT, 200: S.SENT, 409: S.NO_ROUTE, 422: {"type": "object"}})
async def reply(request: web.Request) -> web.Response:
    cid = path_id(request)
    data = await body(request)
    text = text_field(data, "text", required=False, allow_empty=True) or ""
    channel_raw = data.get("channel")
    if channel_raw is not None and channel_raw not in S.CHANNELS:
        raise bad("channel", f"must be one of {', '.join(S.CHANNELS)}")
    channel = Channel(channel_raw) if channel_raw else None
    attachments = _attachments(data, request.app[RUNTIME].settings)
    subject = text_field(data, "subject", required=False, max_len=500)
    canned_id = id_field(data, "canned_response_id", required=False)
    inbox_id = id_field(data, "inbox_id", required=False)
    variables = data.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise bad("variables", "must be an object of strings")
    storable("variables", variables)
    key = request.headers.get("Idempotency-Key")
    if key is not None and (not key.strip() or len(key) > 200):
        raise bad("Idempotency-Key", "must be 1 to 200 characters")
    if not text.strip() and canned_id is None and not attachments:
        raise bad("text", "a reply needs text, a canned response or attachments")
    rt = request.app[RUNTIME]
    async with transaction(request, *ACT) as tx:
        if canned_id is not None:
            await visible_conversation(tx.conn, tx.scope, cid)
            row = await canned.get(tx.conn, canned_id, None if tx.scope.everything else tx.scope.team_ids)
            values = {**await canned.variables_for(tx.conn, cid, tx.actor.agent_id), **variables}
            text = canned.render(row["body"], values)
        fingerprint = actions.request_hash({"text": text, "channel": channel_raw, "subject": subject,
                                            "attachments": data.get("attachments") or [],
                                            **({"inbox_id": inbox_id} if inbox_id is not None else {})})
        try:
            message_id, duplicate = await actions.reply(
                tx.conn, tx.scope, tx.actor, cid, text=text, channel=channel, attachments=attachments,
                subject=subject, idempotency_key=key, fingerprint=fingerprint, effects=tx.effects,
                policy=routing_policy(rt.settings), inbox_id=inbox_id)
        except thread.NoRoute as exc:
            raise ApiError(409, "no_route", str(exc), reasons=exc.reasons) from None
        message = await queries.get_message(tx.conn, message_id)
    return respond({"message": message, "duplicate": duplicate}, status=200 if duplicate else 201)


@operation("Add a private note (agents only, never sent)", roles=ACT, request=S.NOTE_BODY,
           responses={201: S.MESSAGE})
async def add_note(request: web.Request) -> web.Response:
    cid = path_id(request)
    data = await body(request)
    text = text_field(data, "text")
    async with transaction(request, *ACT) as tx:
        mid = await actions.add_note(tx.conn, tx.scope, tx.actor, cid, text, tx.effects)
        message = await queries.get_message(tx.conn, mid)
    return respond(message, status=201)


async def _detail(tx, cid: int) -> dict:
    return await queries.conversation_detail(tx.conn, tx.scope, cid)


@operation("Assign to an agent", roles=ACT, request=S.ASSIGN_BODY,
           responses={200: S.CONVERSATION_DETAIL, 422: {"type": "object"}})
async def assign(request: web.Request) -> web.Response:
    cid = path_id(request)
    agent_id = id_field(await body(request), "agent_id")
    async with transaction(request, *ACT) as tx:
        await actions.assign(tx.conn, tx.scope, tx.actor, cid, agent_id, tx.effects)
        return respond(await _detail(tx, cid))


@operation("Unassign", roles=ACT, responses={200: S.CONVERSATION_DETAIL})
async def unassign(request: web.Request) -> web.Response:
    cid = path_id(request)
    async with transaction(request, *ACT) as tx:
        await actions.unassign(tx.conn, tx.scope, tx.actor, cid, tx.effects)
        return respond(await _detail(tx, cid))


@operation("Claim an unassigned conversation (of concurrent claims exactly one wins; the others get 409)",
           roles=ACT, responses={200: S.CONVERSATION_DETAIL, 409: {"type": "object"}, 422: {"type": "object"}})
async def claim(request: web.Request) -> web.Response:
    cid = path_id(request)
    async with transaction(request, *ACT) as tx:
        await actions.claim(tx.conn, tx.scope, tx.actor, cid, tx.effects)
        return respond(await _detail(tx, cid))


@operation("Route to a team (null: the unrouted queue)", roles=ACT, request=S.TEAM_BODY,
           responses={200: S.TEAM_ROUTED, 422: {"type": "object"}})
async def set_team(request: web.Request) -> web.Response:
    cid = path_id(request)
    team_id = id_field(await body(request), "team_id", nullable=True)
    async with transaction(request, *ACT) as tx:
        await actions.set_team(tx.conn, tx.scope, tx.actor, cid, team_id, tx.effects)
    # not the detail: an agent may have just routed it out of their own sight
    return respond({"conversation_id": cid, "team_id": team_id})


@operation("Snooze until a time (wakes up then, or on a new customer message)", roles=ACT,
           request=S.SNOOZE_BODY, responses={200: S.CONVERSATION_DETAIL, 409: {"type": "object"},
                                             422: {"type": "object"}})
async def snooze(request: web.Request) -> web.Response:
    cid = path_id(request)
    until = parse_time("until", (await body(request)).get("until"))
    rt = request.app[RUNTIME]
    async with transaction(request, *ACT) as tx:
        await actions.snooze(tx.conn, tx.scope, tx.actor, cid, until, rt.clock.now(), tx.effects)
        return respond(await _detail(tx, cid))


@operation("Resolve: ends the episode; optionally asks a CSAT question on the customer's channel",
           roles=ACT, request=S.RESOLVE_BODY, request_required=False,
           responses={200: S.RESOLVED, 409: {"type": "object"}})
async def resolve(request: web.Request) -> web.Response:
    cid = path_id(request)
    data = await body(request, optional=True)
    csat = data.get("csat", False)
    if not isinstance(csat, bool):
        raise bad("csat", "must be true or false")
    csat_text = text_field(data, "csat_text", required=False, max_len=1000) or (DEFAULT_CSAT if csat else None)
    rt = request.app[RUNTIME]
    async with transaction(request, *ACT) as tx:
        result = await actions.resolve(tx.conn, tx.scope, tx.actor, cid, tx.effects, csat_text=csat_text,
                                       policy=routing_policy(rt.settings))
        return respond({"conversation": await _detail(tx, cid), **result})


@operation("Reopen a resolved conversation", roles=ACT, responses={200: S.CONVERSATION_DETAIL, 409: {"type": "object"}})
async def reopen(request: web.Request) -> web.Response:
    cid = path_id(request)
    async with transaction(request, *ACT) as tx:
        await actions.reopen(tx.conn, tx.scope, tx.actor, cid, tx.effects)
        return respond(await _detail(tx, cid))


@operation("Hand back to the bot at a chosen flow state (the bot says that state's prompt); 422 for an "
           "unknown state, 409 when this gateway runs without bot flows", roles=ACT, request=S.HANDBACK_BODY,
           responses={200: S.CONVERSATION_DETAIL, 409: {"type": "object"}, 422: {"type": "object"}})
async def hand_back(request: web.Request) -> web.Response:
    cid = path_id(request)
    data = await body(request)
    state = text_field(data, "flow_state", max_len=200)
    flow = text_field(data, "flow_name", required=False, max_len=200)
    async with transaction(request, *ACT) as tx:
        await actions.hand_back(tx.conn, tx.scope, tx.actor, cid, state, flow, tx.effects,
                                flow_handler=request.app[RUNTIME].flow_handler)
        return respond(await _detail(tx, cid))


@operation("The bot flows and their states, for a hand-back (empty when this gateway runs without bot flows)",
           roles=READ, responses={200: S.FLOWS})
async def list_flows(request: web.Request) -> web.Response:
    await principal(request, *READ)
    handler = request.app[RUNTIME].flow_handler
    flows = handler.registry.current_versions() if handler is not None else []
    return respond({"default": handler.registry.default_flow if handler is not None else None, "flows": [
        {"name": f.name, "version": f.version, "start": f.start,
         "states": [{"name": st.name, "description": st.description, "final": st.final}
                    for st in f.states.values()]} for f in flows]})


def _labels(data: dict, name: str) -> list[str]:
    raw = data.get(name) or []
    if not isinstance(raw, list) or len(raw) > 50 or not all(isinstance(x, str) and 0 < len(x.strip()) <= 50
                                                             for x in raw):
        raise bad(name, "must be a list of labels (1 to 50 characters each)")
    return [storable(name, x.strip().lower()) for x in raw]


@operation("Add and remove labels", roles=ACT, request=S.LABELS_BODY,
           responses={200: {"type": "object", "required": ["labels"], "properties": {"labels": {"type": "array"}}}})
async def labels(request: web.Request) -> web.Response:
    cid = path_id(request)
    data = await body(request)
    add, remove = _labels(data, "add"), _labels(data, "remove")
    async with transaction(request, *ACT) as tx:
        return respond({"labels": await actions.change_labels(tx.conn, tx.scope, tx.actor, cid, add, remove,
                                                              tx.effects)})


@operation("Tell the others (and the customer's chat) that you are typing", roles=ACT, request=S.TYPING_BODY,
           request_required=False, responses={200: S.OK})
async def typing(request: web.Request) -> web.Response:
    cid = path_id(request)
    data = await body(request, optional=True)
    active = data.get("typing", True)
    if not isinstance(active, bool):
        raise bad("typing", "must be true or false")
    async with transaction(request, *ACT) as tx:
        await visible_conversation(tx.conn, tx.scope, cid)
        actions.typing(tx.effects, cid, tx.actor.agent_id, active)
    return respond({"ok": True})


def register(app: web.Application) -> None:
    r = app.router
    base = "/api/v1/conversations"
    r.add_get(base, list_conversations)
    r.add_get(base + "/{id}", get_conversation)
    r.add_get(base + "/{id}/messages", list_messages)
    r.add_get(base + "/{id}/channels", channel_options)
    r.add_post(base + "/{id}/messages", reply)
    r.add_post(base + "/{id}/notes", add_note)
    r.add_post(base + "/{id}/assign", assign)
    r.add_post(base + "/{id}/unassign", unassign)
    r.add_post(base + "/{id}/claim", claim)
    r.add_post(base + "/{id}/team", set_team)
    r.add_post(base + "/{id}/snooze", snooze)
    r.add_post(base + "/{id}/resolve", resolve)
    r.add_post(base + "/{id}/reopen", reopen)
    r.add_post(base + "/{id}/handback", hand_back)
    r.add_post(base + "/{id}/labels", labels)
    r.add_post(base + "/{id}/typing", typing)
    r.add_get("/api/v1/flows", list_flows)
    inbox_contacts.register(app)
    inbox_consent.register(app)
    inbox_people.register(app)
    inbox_admin.register(app)
    stream.register(app)  # the snooze timer handler is registered by gateway.inbox.plugin
