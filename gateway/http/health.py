"""Liveness, readiness (PostgreSQL and Redis reachable) and Prometheus metrics."""
from __future__ import annotations

import asyncio
import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.app import metrics as m
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    checks = {}
    try:
        async with asyncio.timeout(2):
            await rt.pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}"
    try:
        async with asyncio.timeout(2):
            await rt.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ok else "not_ready", "checks": checks},
                             status=200 if ok else 503)


METRICS_CACHE = web.AppKey("metrics_cache", m.GaugeCache)


def register(app: web.Application) -> None:
    rt = app[RUNTIME]
    app[METRICS_CACHE] = m.GaugeCache(rt.settings.metrics_cache_seconds)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; behind `Authorization: Bearer <GATEWAY_METRICS_TOKEN>` when that is set."""
    rt = request.app[RUNTIME]
    expected = rt.settings.metrics_token
    if expected:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "GATEWAY_METRICS_TOKEN is set: send it as a bearer token")
    await request.app[METRICS_CACHE].refresh(rt)
    return web.Response(body=generate_latest(m.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
