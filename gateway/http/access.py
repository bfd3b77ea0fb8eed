"""Who is calling /api/v1, and whether that right still holds.

Two credentials lead in: a bearer token (integrations, scripts) and the console's session cookie
(signed-in agents); `principal()` takes either, so every route works with both. A caller using
the cookie must also send the CSRF token (`X-CSRF-Token`) on every state-changing request, and a
WebSocket opened with the cookie must come from our own origin.

`still_allowed` is the one rule for "may this principal still act": every way in (bearer tokens
here, the console's cookie sessions, open WebSockets re-checking) goes through it, so a revoked
token, a deactivated agent or an ended session stops working everywhere at once.
`announce` tells every process (Redis pub/sub) that a right ended or changed, so open sockets
re-check at once instead of at their next periodic check.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from gateway.app.log import get_logger
from gateway.domain import auth
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME
from gateway.inbox import sign_in

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)
PRINCIPAL = web.RequestKey("principal", auth.Principal)
SESSION_COOKIE = "gw_session"
CSRF_COOKIE = "gw_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def still_allowed(conn: asyncpg.Connection, who: auth.Principal) -> bool:
    """True while `who` may act: its token is not revoked, its console session (if any) has not
    ended or expired and its agent still has the role `who` was given (requests read it afresh; an
    open socket holds the role it connected with and is closed when it changes), and its agent (if
    any) is active.

    The bootstrap admin (GATEWAY_ADMIN_TOKEN, no token row) holds as long as the setting does.
    """
    if who.token_id is None and who.agent_id is None:
        return who.is_admin
    return await auth.still_valid(conn, token_id=who.token_id, agent_id=who.agent_id,
                                  session_id=who.session_id, role=who.role)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


async def _allowed_principal(request: web.Request, look_up, refusal: str) -> auth.Principal:
    """The principal `look_up(conn)` finds, when it is still allowed; 401 with `refusal` otherwise."""
    async with request.app[RUNTIME].pool.acquire(timeout=5) as conn:
        who = await look_up(conn)
        if who is not None and not await still_allowed(conn, who):
            who = None
    if who is None:
        raise ApiError(401, "unauthorized", refusal)
    request[PRINCIPAL] = who
    return who


async def authenticate_token(request: web.Request, token: str | None) -> auth.Principal:
    """The principal of a bearer token that is still allowed; 401 otherwise."""
    admin_token = request.app[RUNTIME].settings.admin_token
    return await _allowed_principal(request, lambda conn: auth.authenticate(conn, token, admin_token=admin_token),
                                    "a valid bearer token is required")


def _check_browser_request(request: web.Request, session: str) -> None:
    """Cookie-authenticated requests: CSRF token on state changes, same origin on WebSockets."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        origin = request.headers.get("Origin", "")
        if origin.split("://", 1)[-1] != request.host:
            raise ApiError(403, "cross_origin", "the console's WebSocket must come from the console's origin")
    elif request.method not in SAFE_METHODS:
        secret = request.app[RUNTIME].settings.secret_key
        if not sign_in.csrf_ok(secret, session, request.headers.get(CSRF_HEADER)):
            raise ApiError(403, "csrf_failed", f"a signed-in browser must send the {CSRF_HEADER} header")


async def authenticate_session(request: web.Request, session: str) -> auth.Principal:
    """The signed-in agent of a console session cookie that is still allowed; 401 otherwise."""
    _check_browser_request(request, session)
    return await _allowed_principal(request, lambda conn: sign_in.session_principal(conn, session),
                                    "the console session has ended; sign in again")


async def principal(request: web.Request, *roles: str, scope: str | None = None) -> auth.Principal:
    """The caller, who must hold one of `roles` (admin always may) or, when given, the token
    scope `scope`. 401 without a valid token or session, 403 without the right (or without the
    CSRF token when the session cookie is used)."""
    cached = request.get(PRINCIPAL)
    if cached is None:
        token = bearer_token(request)
        session = None if token else request.cookies.get(SESSION_COOKIE)
        cached = await (authenticate_session(request, session) if session
                        else authenticate_token(request, token))
    if roles and not cached.is_admin and cached.role not in roles and not (scope and scope in cached.scopes):
        needs = ", ".join(roles) + (f" (or a token with the {scope} scope)" if scope else "")
        raise ApiError(403, "forbidden", f"this endpoint needs one of the roles: {needs}")
    return cached


async def announce(rt: Runtime, *, agent_id: int | None = None, token_ids=()) -> None:
    """Tell every process that rights changed for an agent and/or tokens (after commit).

    Best effort: a lost announcement is caught by the sockets' periodic re-check.
    """
    event = {"agent_id": agent_id, "token_ids": list(token_ids)}
    try:
        await rt.redis.publish(rt.keys.rights_channel(), json.dumps(event))
    except Exception as exc:
        log.warning("rights announcement not published; sockets re-check on their timer", error=str(exc))
