"""The agent console: its page and static modules, sign-in/sign-out, and invite acceptance.

  GET    /console                 the single page (plain ES modules under /console/static/, no build)
  POST   /api/v1/session          {email, password} -> session cookie (HttpOnly, SameSite=Strict)
                                  and the CSRF token the page sends back in X-CSRF-Token
  DELETE /api/v1/session          sign out (ends the session server-side)
  POST   /api/v1/invites/accept   {token, password}: set the password from an invite link, signed in

The page is a client of /api/v1 and the realtime feed like any integration; a strict CSP (no
inline script, nothing from elsewhere) backs up the page's rule of rendering user content as text.
"""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from gateway.app.log import get_logger
from gateway.http.access import CSRF_COOKIE, CSRF_HEADER, PRINCIPAL, SESSION_COOKIE, announce, principal
from gateway.http.errors import ApiError
from gateway.http.inbox_common import body, respond
from gateway.http.keys import RUNTIME
from gateway.http.openapi import ID, obj, operation
from gateway.inbox import Invalid, agents, sign_in

log = get_logger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "static" / "console"
_ASSET = re.compile(r"^[a-z0-9_-]+\.(js|css|svg)$")
_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
LOGIN_LIMITER = web.AppKey("login_limiter", sign_in.LoginLimiter)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self' {ws}; media-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STR = {"type": "string"}
SIGN_IN_BODY = obj(["email", "password"], email={"type": "string", "maxLength": 320},
                   password={"type": "string", "maxLength": 1024})
SIGNED_IN = obj(["agent_id", "role", "name", "csrf_token", "expires_in"], agent_id=ID, role=STR, name=STR,
                csrf_token=STR, expires_in={"type": "integer"})
INVITE_BODY = obj(["token", "password"], token={"type": "string", "maxLength": 200},
                  password={"type": "string", "maxLength": 1024})


def _security_headers(request: web.Request) -> dict[str, str]:
    ws = ("wss://" if request.secure else "ws://") + request.host
    return {"Content-Security-Policy": CSP.format(ws=ws), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


async def console_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={
        "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache", **_security_headers(request)})


async def console_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if not _ASSET.match(name) or not (STATIC / name).is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={
        "Content-Type": f"{_TYPES[name.rsplit('.', 1)[1]]}; charset=utf-8", "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff"})


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[RUNTIME].settings.base_url.startswith("https://")


def _set_session(request: web.Request, response: web.Response, session: sign_in.NewSession) -> None:
    secure = _secure(request)
    response.set_cookie(SESSION_COOKIE, session.token, max_age=session.expires_in, path="/", httponly=True,
                        samesite="Strict", secure=secure)
    # readable by the page, which echoes it in X-CSRF-Token; useless without the HttpOnly cookie
    response.set_cookie(CSRF_COOKIE, session.csrf, max_age=session.expires_in, path="/", samesite="Strict",
                        secure=secure)


async def _signed_in(request: web.Request, conn, agent_id: int, status: int = 200) -> web.Response:
    rt = request.app[RUNTIME]
    session = await sign_in.start_session(
        conn, agent_id, secret_key=rt.settings.secret_key,
        ttl=timedelta(hours=rt.settings.console_session_hours),
        user_agent=request.headers.get("User-Agent", ""), address=request.remote or "")
    agent = await agents.get_agent(conn, agent_id)
    response = respond({"agent_id": agent_id, "role": agent["role"], "name": agent["name"],
                        "csrf_token": session.csrf, "expires_in": session.expires_in}, status=status)
    _set_session(request, response, session)
    return response


@operation("Sign in to the console with email and password (sets the session cookie)",
           description="Answers the CSRF token to send as `X-CSRF-Token` on every state-changing request "
                       "made with the cookie. Failed attempts are limited per account and per address (429).",
           request=SIGN_IN_BODY, responses={200: SIGNED_IN, 401: {"type": "object"}, 429: {"type": "object"}},
           tags=("console",))
async def create_session(request: web.Request) -> web.Response:
    data = await body(request)
    email, password = data.get("email"), data.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or len(email) > 320 or len(password) > 1024:
        raise ApiError(400, "invalid_field", "email and password are required strings")
    email = email.strip().lower()
    address = request.remote or "unknown"
    limiter = request.app[LOGIN_LIMITER]
    wait = await limiter.blocked_for(email, address)
    if wait:
        log.info("sign-in refused: too many failures", wait=wait)
        raise ApiError(429, "too_many_attempts", f"too many failed sign-ins; try again in {wait} s",
                       retry_after=wait)
    rt = request.app[RUNTIME]
    async with rt.pool.acquire(timeout=5) as conn:
        agent = await sign_in.find_for_sign_in(conn, email)
        ok = await sign_in.verify_password(password, agent["password_hash"] if agent else None)
        if not ok:
            await limiter.failed(email, address)
            log.info("sign-in failed", known_agent=agent is not None)
            raise ApiError(401, "invalid_credentials", "the email or the password is wrong")
        await limiter.succeeded(email)
        log.info("agent signed in", agent_id=agent["id"])
        return await _signed_in(request, conn, agent["id"])


def _clear(response: web.Response) -> web.Response:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/")
    return response


@operation("Sign out of the console (ends the session; needs X-CSRF-Token)", roles=("agent", "readonly"),
           responses={204: None}, tags=("console",))
async def delete_session(request: web.Request) -> web.Response:
    session = request.cookies.get(SESSION_COOKIE)
    if session and "Authorization" not in request.headers:
        try:
            await principal(request)     # checks the CSRF header: a foreign page cannot sign you out
        except ApiError as exc:
            if exc.status != 401:        # an already dead session just loses its cookies
                raise
        else:
            async with request.app[RUNTIME].pool.acquire(timeout=5) as conn:
                await sign_in.end_session(conn, session)
            await announce(request.app[RUNTIME], agent_id=request[PRINCIPAL].agent_id)   # its open feeds close
    return _clear(web.Response(status=204))


@operation("Set a password from an invite link (signs the agent in)", request=INVITE_BODY,
           responses={201: SIGNED_IN, 422: {"type": "object"}}, tags=("console",))
async def accept_invite(request: web.Request) -> web.Response:
    data = await body(request)
    token, password = data.get("token"), data.get("password")
    if not isinstance(token, str) or not isinstance(password, str) or len(token) > 200:
        raise ApiError(400, "invalid_field", "token and password are required strings")
    rt = request.app[RUNTIME]
    async with rt.pool.acquire(timeout=5) as conn, conn.transaction():
        try:
            agent_id = await sign_in.accept_invite(conn, token, password)
        except Invalid as exc:
            raise ApiError(422, exc.code, exc.message) from None
        log.info("invite accepted", agent_id=agent_id)
        return await _signed_in(request, conn, agent_id, status=201)


def invite_url(request: web.Request, token: str) -> str:
    """Where an invited agent sets a password; the token rides in the fragment, never sent to a server log."""
    return f"{request.app[RUNTIME].settings.base_url}/console#invite={token}"


def register(app: web.Application) -> None:
    rt = app[RUNTIME]
    s = rt.settings
    app[LOGIN_LIMITER] = sign_in.LoginLimiter(rt.redis, rt.keys, per_account=s.login_max_failures_account,
                                              per_address=s.login_max_failures_address,
                                              window=s.login_window_seconds)
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/", console_page)
    app.router.add_get("/console/static/{name}", console_asset)
    app.router.add_post("/api/v1/session", create_session)
    app.router.add_delete("/api/v1/session", delete_session)
    app.router.add_post("/api/v1/invites/accept", accept_invite)


__all__ = ["CSRF_HEADER", "invite_url", "register"]
