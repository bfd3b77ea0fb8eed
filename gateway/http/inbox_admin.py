"""Inbox administration and reporting: who am I, agents and their tokens, teams, canned
responses, presence, metrics, the audit log, and the auto-assigner's background loop."""
from __future__ import annotations

import asyncio
import base64
import re
from datetime import datetime, timedelta, timezone

from aiohttp import web

from gateway.domain import auth
from gateway.http import inbox_schemas as S
from gateway.http.access import announce, principal
from gateway.http.console import invite_url
from gateway.http.errors import ApiError
from gateway.http.inbox_common import (ACT, ADMIN, READ, bad, body, id_field, int_field, parse_time, path_id, q_bool,
                                       q_int, respond, text_field, transaction)
from gateway.http.keys import RUNTIME
from gateway.http.openapi import ID, TIME, Param, operation
from gateway.inbox import Invalid, NotFound, actions, agents, assignment, canned, reports, sign_in

REPORTING = ("readonly",)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
AUTO_ASSIGNER = web.AppKey("auto_assigner", assignment.AutoAssigner)


@operation("Who am I: role, agent and teams of this token", roles=("agent", "readonly", "integration"),
           responses={200: S.ME})
async def me(request: web.Request) -> web.Response:
    async with transaction(request, "agent", "readonly", "integration") as tx:
        p = tx.principal
        teams = None if tx.scope.everything else sorted(tx.scope.team_ids)
        return respond({"role": p.role, "name": p.name, "agent_id": p.agent_id, "token_id": p.token_id,
                        "team_ids": teams})


@operation("List agents with presence and teams", roles=READ, responses={200: {"type": "array", "items": S.AGENT}})
async def list_agents(request: web.Request) -> web.Response:
    async with transaction(request, *READ) as tx:
        return respond(await agents.list_agents(tx.conn))


def _team_ids(data: dict) -> list[int] | None:
    raw = data.get("team_ids")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 100:
        raise bad("team_ids", "must be a list of team ids")
    return [id_field({"team_ids": x}, "team_ids") for x in raw]


def _role(data: dict) -> str | None:
    role = data.get("role")
    if role is not None and role not in ("agent", "admin"):
        raise bad("role", "must be agent or admin")
    return role


@operation("Create an agent", roles=ADMIN, request=S.AGENT_BODY,
           description="With `email` and `password` the agent can sign in to the console at once; with an "
                       "`email` and no password the answer carries an `invite_url` where the agent sets one.",
           responses={201: S.AGENT, 409: {"type": "object"}, 422: {"type": "object"}})
async def create_agent(request: web.Request) -> web.Response:
    data = await body(request)
    email = text_field(data, "email", required=False, max_len=320)
    email = email.strip().lower() if email else None
    if email is not None and not EMAIL.match(email):
        raise bad("email", "must be an email address")
    name = text_field(data, "name", required=email is None, max_len=200) or email.split("@")[0]
    password = data.get("password")
    if password is not None:
        if email is None:
            raise bad("password", "an agent who signs in with a password needs an email")
        try:
            sign_in.check_password_rules(password)
        except Invalid as exc:
            raise bad("password", exc.message) from None
    capacity = int_field(data, "capacity", 0, 1000)
    role = _role(data) or "agent"
    async with transaction(request, *ADMIN) as tx:
        agent = await agents.create_agent(tx.conn, name=name, email=email,
                                          capacity=5 if capacity is None else capacity,
                                          team_ids=_team_ids(data) or [], role=role)
        if password is not None:
            await sign_in.set_password(tx.conn, agent["id"], password)
            agent["has_password"] = True
        elif email is not None:
            agent["invite_url"] = await _invite(request, tx.conn, agent["id"])
        await actions.audit(tx.conn, tx.actor, "agent_create", details={"agent_id": agent["id"], "role": role})
    return respond(agent, status=201)


async def _invite(request: web.Request, conn, agent_id: int) -> str:
    hours = request.app[RUNTIME].settings.console_invite_hours
    return invite_url(request, await sign_in.create_invite(conn, agent_id, timedelta(hours=hours)))


@operation("A new invite link for an agent (earlier links stop working)", roles=ADMIN,
           responses={201: S.INVITE, 422: {"type": "object"}})
async def invite_agent(request: web.Request) -> web.Response:
    agent_id = path_id(request)
    async with transaction(request, *ADMIN) as tx:
        agent = await agents.get_agent(tx.conn, agent_id)
        if not agent["email"] or agent["deactivated_at"] is not None:
            raise Invalid("not_invitable", "only an active agent with an email can be invited")
        url = await _invite(request, tx.conn, agent_id)
        await actions.audit(tx.conn, tx.actor, "agent_invite", details={"agent_id": agent_id})
    return respond({"invite_url": url}, status=201)


@operation("Change an agent (name, capacity, teams, role, active); deactivating ends their sessions",
           roles=ADMIN, request=S.AGENT_PATCH, responses={200: S.AGENT, 422: {"type": "object"}})
async def patch_agent(request: web.Request) -> web.Response:
    agent_id = path_id(request)
    data = await body(request)
    active = data.get("active")
    if active is not None and not isinstance(active, bool):
        raise bad("active", "must be true or false")
    async with transaction(request, *ADMIN) as tx:
        agent = await agents.update_agent(
            tx.conn, agent_id, name=text_field(data, "name", required=False, max_len=200),
            capacity=int_field(data, "capacity", 0, 1000), team_ids=_team_ids(data), active=active,
            role=_role(data))
        await actions.audit(tx.conn, tx.actor, "agent_update", details={"agent_id": agent_id})
    if active is not None or "team_ids" in data or "role" in data:   # open sockets re-check their rights
        await announce(request.app[RUNTIME], agent_id=agent_id)
    return respond(agent)


@operation("Create an API token for an agent (shown once)", roles=ADMIN, request=S.TOKEN_BODY,
           request_required=False, responses={201: S.TOKEN, 422: {"type": "object"}})
async def create_agent_token(request: web.Request) -> web.Response:
    agent_id = path_id(request)
    data = await body(request, optional=True)
    async with transaction(request, *ADMIN) as tx:
        agent = await agents.get_agent(tx.conn, agent_id)
        if agent["deactivated_at"] is not None:
            raise Invalid("agent_deactivated", "the agent is deactivated; reactivate it first")
        name = text_field(data, "name", required=False, max_len=200) or f"agent {agent['name']}"
        token_id, token = await auth.create_token(tx.conn, name=name, role="agent", agent_id=agent_id)
        await actions.audit(tx.conn, tx.actor, "token_create", details={"token_id": token_id, "agent_id": agent_id})
    return respond({"id": token_id, "token": token, "prefix": token.split("_")[1], "agent_id": agent_id},
                   status=201)


def _token_info(row) -> dict:
    return {**dict(row), "scopes": list(row["scopes"])}


@operation("List API tokens (never their secrets)", roles=ADMIN,
           query=(Param("agent_id", ID), Param("active", {"type": "boolean"})),
           responses={200: {"type": "array", "items": S.TOKEN_INFO}})
async def list_tokens(request: web.Request) -> web.Response:
    agent_id = q_int(request, "agent_id", lo=1)
    active = q_bool(request, "active") if request.query.get("active") else None
    async with transaction(request, *ADMIN) as tx:
        rows = await auth.list_tokens(tx.conn)
    return respond([_token_info(r) for r in rows
                    if (agent_id is None or r["agent_id"] == agent_id)
                    and (active is None or (r["revoked_at"] is None) == active)])


@operation("Create an API token (shown once): any role; an agent token names its agent", roles=ADMIN,
           request=S.TOKEN_NEW_BODY, responses={201: S.TOKEN_CREATED, 422: {"type": "object"}})
async def create_token(request: web.Request) -> web.Response:
    data = await body(request)
    name = text_field(data, "name", max_len=200)
    role = data.get("role")
    if role not in auth.ROLES:
        raise bad("role", f"must be one of {', '.join(auth.ROLES)}")
    agent_id = id_field(data, "agent_id", required=role == "agent")
    scopes = data.get("scopes", [])
    if not isinstance(scopes, list) or any(x not in auth.SCOPES for x in scopes):
        raise bad("scopes", f"must be a list of: {', '.join(auth.SCOPES)}")
    async with transaction(request, *ADMIN) as tx:
        if agent_id is not None:
            try:
                agent = await agents.get_agent(tx.conn, agent_id)
            except NotFound:
                raise Invalid("unknown_agent", f"no agent with id {agent_id}") from None
            if agent["deactivated_at"] is not None:
                raise Invalid("agent_deactivated", "the agent is deactivated; reactivate it first")
        token_id, token = await auth.create_token(tx.conn, name=name, role=role, agent_id=agent_id,
                                                  scopes=tuple(scopes))
        await actions.audit(tx.conn, tx.actor, "token_create",
                            details={"token_id": token_id, "role": role, "agent_id": agent_id})
    return respond({"id": token_id, "token": token, "prefix": token.split("_")[1], "role": role,
                    "agent_id": agent_id, "scopes": sorted(set(scopes))}, status=201)


@operation("Revoke an API token: it stops working at once, open sockets included", roles=ADMIN,
           responses={204: None})
async def revoke_token(request: web.Request) -> web.Response:
    token_id = path_id(request)
    async with transaction(request, *ADMIN) as tx:
        revoked = await auth.revoke_token(tx.conn, str(token_id))
        if revoked is None:
            raise ApiError(404, "not_found", "no such active token")
        await actions.audit(tx.conn, tx.actor, "token_revoke",
                            details={"token_id": token_id, "agent_id": revoked["agent_id"]})
    await announce(request.app[RUNTIME], agent_id=revoked["agent_id"], token_ids=[token_id])
    return web.Response(status=204)


@operation("List teams", roles=READ, responses={200: {"type": "array", "items": S.TEAM}})
async def list_teams(request: web.Request) -> web.Response:
    async with transaction(request, *READ) as tx:
        return respond(await agents.list_teams(tx.conn))


@operation("Create a team", roles=ADMIN, request=S.TEAM_BODY_NEW, responses={201: S.TEAM, 409: {"type": "object"}})
async def create_team(request: web.Request) -> web.Response:
    name = text_field(await body(request), "name", max_len=200).strip()
    async with transaction(request, *ADMIN) as tx:
        team = await agents.create_team(tx.conn, name)
        await actions.audit(tx.conn, tx.actor, "team_create", details={"team_id": team["id"]})
    return respond({**team, "agent_ids": []}, status=201)


@operation("List canned responses (yours and everyone's)", roles=READ,
           responses={200: {"type": "array", "items": S.CANNED}})
async def list_canned(request: web.Request) -> web.Response:
    async with transaction(request, *READ) as tx:
        return respond(await canned.list_all(tx.conn, None if tx.scope.everything else tx.scope.team_ids))


@operation("Create a canned response; body may use {{contact.name}}, {{agent.name}}, "
           "{{contact.attributes.KEY}} and variables given at send time", roles=ADMIN, request=S.CANNED_BODY,
           responses={201: S.CANNED, 409: {"type": "object"}, 422: {"type": "object"}})
async def create_canned(request: web.Request) -> web.Response:
    data = await body(request)
    short_code = text_field(data, "short_code", max_len=100).strip()
    text = text_field(data, "body", max_len=10_000)
    title = text_field(data, "title", required=False, max_len=200, allow_empty=True) or ""
    team_id = id_field(data, "team_id", required=False)
    async with transaction(request, *ADMIN) as tx:
        row = await canned.create(tx.conn, short_code=short_code, title=title, body=text, team_id=team_id)
        if row is None:
            raise ApiError(409, "short_code_taken", "a canned response with this short code exists")
        await actions.audit(tx.conn, tx.actor, "canned_create", details={"canned_response_id": row["id"]})
    return respond(row, status=201)


@operation("Delete a canned response", roles=ADMIN, responses={204: None})
async def delete_canned(request: web.Request) -> web.Response:
    canned_id = path_id(request)
    async with transaction(request, *ADMIN) as tx:
        if not await canned.delete(tx.conn, canned_id):
            raise ApiError(404, "not_found", "no such resource")
        await actions.audit(tx.conn, tx.actor, "canned_delete", details={"canned_response_id": canned_id})
    return web.Response(status=204)


@operation("Presence heartbeat (online/away/offline); online agents receive auto-assignments",
           roles=ACT, request=S.PRESENCE_BODY, responses={200: S.PRESENCE, 422: {"type": "object"}})
async def presence(request: web.Request) -> web.Response:
    data = await body(request)
    state = data.get("presence")
    if state not in assignment.PRESENCES:
        raise bad("presence", "must be online, away or offline")
    async with transaction(request, *ACT) as tx:
        if tx.actor.agent_id is None:
            raise Invalid("not_an_agent", "only a token linked to an agent has a presence")
        result = await assignment.heartbeat(tx.conn, tx.actor.agent_id, state, tx.effects)
        if not result:
            raise Invalid("not_an_agent", "the agent is deactivated")
    if state == "online":
        await request.app[AUTO_ASSIGNER].run_once()
    return respond(result)


@operation("The team routing rules in force (flows/routing.yaml): rules, default team, team hours",
           roles=READ, responses={200: S.ROUTING})
async def routing_rules(request: web.Request) -> web.Response:
    await principal(request, *READ)
    router = request.app[RUNTIME].team_router
    return respond(router.config.describe())


@operation("Deploy the flows directory (flows, journeys, routing file) to every running process: validated "
           "first (422 naming the file and problem; nothing changes), then new conversations and enrollments "
           "take the new versions while running ones stay on theirs", roles=ADMIN,
           responses={200: S.DEPLOYED, 422: {"type": "object"}})
async def deploy_flows(request: web.Request) -> web.Response:
    from gateway.flows.deploy import DeployError, deploy
    from gateway.infra.assets import flows_dir

    await principal(request, *ADMIN)
    rt = request.app[RUNTIME]
    try:
        result = await deploy(rt.pool, rt.redis, rt.keys, flows_dir(rt.settings.flows_dir))
    except DeployError as exc:
        raise ApiError(422, "invalid_definition", str(exc)) from None
    await rt.deploys.apply_latest()     # this process at once; the others on the announcement
    return respond(result)


@operation("Run one auto-assignment pass now", roles=ADMIN, responses={200: S.ASSIGN_RUN})
async def run_assignment(request: web.Request) -> web.Response:
    await principal(request, *ADMIN)
    return respond({"assigned": await request.app[AUTO_ASSIGNER].run_once()})


@operation("Inbox metrics over a period (default: the last 7 days)", roles=REPORTING,
           query=(Param("since", TIME), Param("until", TIME)), responses={200: S.METRICS})
async def metrics_summary(request: web.Request) -> web.Response:
    now = datetime.now(timezone.utc)
    until = parse_time("until", request.query["until"]) if request.query.get("until") else now
    since = parse_time("since", request.query["since"]) if request.query.get("since") else until - timedelta(days=7)
    if since >= until:
        raise bad("since", "must be before until")
    async with transaction(request, *REPORTING) as tx:
        return respond(await reports.summary(tx.conn, since, until))


@operation("The audit log of agent actions, newest first", roles=REPORTING,
           query=(Param("conversation_id", ID), Param("contact_id", ID),
                  Param("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                  Param("cursor", {"type": "string", "maxLength": 100})),
           responses={200: S.AUDIT})
async def audit_log(request: web.Request) -> web.Response:
    limit = q_int(request, "limit", default=50, lo=1, hi=200)
    before = 2**63 - 1
    if request.query.get("cursor"):
        try:
            before = int(base64.urlsafe_b64decode(request.query["cursor"] + "==").decode())
            if not 0 < before < 2**63:
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            raise bad("cursor", "is not a cursor of this list") from None
    conversation_id, contact_id = q_int(request, "conversation_id", lo=1), q_int(request, "contact_id", lo=1)
    async with transaction(request, *REPORTING) as tx:
        rows = await actions.audit_page(tx.conn, before=before, limit=limit + 1, conversation_id=conversation_id,
                                        contact_id=contact_id)
    page = rows[:limit]
    cursor = base64.urlsafe_b64encode(str(page[-1]["id"]).encode()).decode().rstrip("=") \
        if len(rows) > limit else None
    return respond({"entries": page, "next_cursor": cursor})


async def _auto_assigner(app: web.Application):
    """The auto-assignment loop lives as long as the HTTP app."""
    stop = asyncio.Event()
    task = asyncio.create_task(app[AUTO_ASSIGNER].run(stop), name="auto-assigner")
    yield
    stop.set()
    await asyncio.gather(task, return_exceptions=True)


def register(app: web.Application) -> None:
    rt = app[RUNTIME]
    app[AUTO_ASSIGNER] = assignment.AutoAssigner(rt.pool, rt.publish_effects)
    app.cleanup_ctx.append(_auto_assigner)
    r = app.router
    r.add_get("/api/v1/me", me)
    r.add_get("/api/v1/agents", list_agents)
    r.add_post("/api/v1/agents", create_agent)
    r.add_patch("/api/v1/agents/{id}", patch_agent)
    r.add_post("/api/v1/agents/{id}/tokens", create_agent_token)
    r.add_post("/api/v1/agents/{id}/invite", invite_agent)
    r.add_get("/api/v1/tokens", list_tokens)
    r.add_post("/api/v1/tokens", create_token)
    r.add_delete("/api/v1/tokens/{id}", revoke_token)
    r.add_get("/api/v1/teams", list_teams)
    r.add_post("/api/v1/teams", create_team)
    r.add_get("/api/v1/canned-responses", list_canned)
    r.add_post("/api/v1/canned-responses", create_canned)
    r.add_delete("/api/v1/canned-responses/{id}", delete_canned)
    r.add_post("/api/v1/presence", presence)
    r.add_post("/api/v1/assignments/run", run_assignment)
    r.add_get("/api/v1/routing", routing_rules)
    r.add_post("/api/v1/flows/deploy", deploy_flows)
    r.add_get("/api/v1/metrics/summary", metrics_summary)
    r.add_get("/api/v1/audit", audit_log)
