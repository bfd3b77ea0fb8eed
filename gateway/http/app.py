"""The aiohttp application factory. Routes are registered by area; resources live in the Runtime."""
from __future__ import annotations

import weakref

from aiohttp import web

from gateway.http import api_inbound, health
from gateway.http.errors import error_middleware
from gateway.http.keys import RUNTIME
from gateway.runtime import Runtime

WEBSOCKETS = web.AppKey("websockets", weakref.WeakSet)


def create_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=runtime.settings.max_body_bytes)
    app[RUNTIME] = runtime
    app[WEBSOCKETS] = weakref.WeakSet()
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_post("/api/v1/inbound", api_inbound.post_inbound)
    for register in _route_modules():
        register(app)
    app.on_shutdown.append(_close_websockets)
    return app


def _route_modules():
    """Areas that register their own routes (channels, agent API, chat), when present."""
    import importlib

    found = []
    for name in ("gateway.http.providers", "gateway.http.email_routes", "gateway.http.chat",
                 "gateway.http.inbox", "gateway.http.attachments", "gateway.http.events_api",
                 "gateway.http.openapi"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.append(module.register)
    return found


async def _close_websockets(app: web.Application) -> None:
    for ws in list(app[WEBSOCKETS]):
        await ws.close(code=1001, message=b"server shutdown")
