"""The aiohttp application factory. Routes are registered by area; resources live in the Runtime.

The channels' inbound routes (webhooks, status callbacks, the chat socket, ...) come from the channel
packages the runtime runs (gateway.channels.registry): this module names none of them.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from gateway.app import plugins
from gateway.channels import registry
from gateway.http import health, rights
from gateway.http.errors import error_middleware
from gateway.http.keys import RUNTIME, WEBSOCKETS

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime


def create_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=runtime.settings.max_body_bytes)
    app[RUNTIME] = runtime
    app[WEBSOCKETS] = weakref.WeakSet()
    health.register(app)
    rights.register(app)      # before the areas whose sockets re-check their rights
    registry.add_routes(app, runtime.channels)
    for register in _route_modules():
        register(app)
    _mount_public_prefix(app, runtime.settings.public_url)
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_websockets)
    return app


def public_prefix(public_url: str | None) -> str:
    """The path part of GATEWAY_PUBLIC_URL ("" for none or "/")."""
    return urlsplit(public_url).path.rstrip("/") if public_url else ""


def _mount_public_prefix(app: web.Application, public_url: str | None) -> None:
    """Serve every route under GATEWAY_PUBLIC_URL's path prefix too, for proxies that keep it
    (https://example.com/gw -> /gw/webhooks/...) as well as for those that strip it."""
    prefix = public_prefix(public_url)
    if not prefix:
        return
    for route in list(app.router.routes()):
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = prefix + resource.canonical
        if route.method == "GET":
            app.router.add_get(path, route.handler)   # with its HEAD route, as the original
        else:
            app.router.add_route(route.method, path, route.handler)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """No response is ever sniffed into another type (e.g. a webhook's challenge echo as HTML)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


ROUTE_MODULES = ("gateway.http.inbox", "gateway.http.inboxes_api", "gateway.http.attachments",
                 "gateway.http.events_api", "gateway.http.openapi", "gateway.http.console", "gateway.http.uploads",
                 "gateway.http.outbox_api", "gateway.http.preferences")


def _route_modules():
    """`register(app)` of each area that adds its own routes (agent API, console, events, ...)."""
    return plugins.load(ROUTE_MODULES, "register")


async def _close_websockets(app: web.Application) -> None:
    for ws in list(app[WEBSOCKETS]):
        await ws.close(code=1001, message=b"server shutdown")
