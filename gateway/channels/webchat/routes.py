"""Web chat routes: the session endpoint, the socket, the widget and the demo page.

  POST /chat/session   {token?, identity?} -> {token, visitor_id, expires_at, conversation_id, identified}
  GET  /chat/ws        the visitor's WebSocket (gateway.channels.webchat.socket)
  GET  /chat/widget.js the embeddable widget (one script tag, no build step)
  GET  /               a demo page that embeds it
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

from gateway.channels.webchat import identify, store
from gateway.channels.webchat.hub import ChatHub
from gateway.channels.webchat.socket import CHAT_HUB, chat_socket, check_origin
from gateway.channels.webchat.tokens import TokenError, issue_session, verify_session
from gateway.http.body import read_json
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME

STATIC = Path(__file__).resolve().parent / "static"   # the widget and the demo page


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_chat_hub)
    app.router.add_post("/chat/session", create_session)
    app.router.add_route("OPTIONS", "/chat/session", session_preflight)
    app.router.add_get("/chat/ws", chat_socket)
    app.router.add_get("/chat/widget.js", widget_js)
    app.router.add_get("/", demo_page)


async def _chat_hub(app: web.Application):
    hub = ChatHub(app[RUNTIME].redis)
    hub.start()
    app[CHAT_HUB] = hub
    yield
    await hub.close()


def _cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """The widget runs on the business's site: let allowed origins read the session answer."""
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


async def session_preflight(request: web.Request) -> web.Response:
    check_origin(request)
    return _cors(request, web.Response(status=204, headers={
        "Access-Control-Allow-Methods": "POST, OPTIONS", "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600"}))


async def create_session(request: web.Request) -> web.Response:
    """A new visitor session, or a renewed one for the visitor a still-valid token names.

    An expired or invalid token starts a new visitor (`previous` says why). With `identity` (the
    business's signed identity token) the visitor is linked to that contact right away.
    """
    check_origin(request)
    try:
        return _cors(request, await _session(request))
    except ApiError as exc:
        return _cors(request, exc.response())


async def _session(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    data = await read_json(request) if request.can_read_body else {}
    for name in ("token", "identity"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ApiError(400, "invalid_field", f"{name} must be a string", field=name)
    secret = rt.settings.secret_key
    visitor_id, previous = None, None
    if data.get("token"):
        try:
            visitor_id = verify_session(secret, data["token"]).visitor_id
        except TokenError as exc:
            previous = exc.code
    session = issue_session(secret, visitor_id)
    if data.get("identity"):
        try:
            await identify.identify(rt, session.visitor_id, data["identity"])
        except TokenError as exc:
            raise ApiError(409 if exc.code in ("identity_unavailable", "identity_conflict") else 400, exc.code,
                           str(exc)) from None
    found = await store.visitor_thread(rt.pool, session.visitor_id)
    body = {"token": session.token, "visitor_id": session.visitor_id,
            "expires_at": datetime.fromtimestamp(session.expires_at, timezone.utc).isoformat(),
            "conversation_id": found.conversation_id, "identified": found.identified}
    if previous:
        body["previous"] = previous
    return web.json_response(body, status=200 if visitor_id else 201)


async def widget_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "widget.js", headers={
        "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "public, max-age=300",
        "Access-Control-Allow-Origin": "*"})


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "demo.html", headers={"Content-Type": "text/html; charset=utf-8",
                                                          "Cache-Control": "no-cache"})
