"""Uniform JSON errors and the mapping of infrastructure outages to 503.

Three distinct rejections, as webhook senders expect: bad authentication (401/403), anomalous
payload (400/413/415), unsupported event (200, ignored, so the sender stops retrying). Input that
fails a check of gateway.domain.inputs (or that the database refuses) is a 400 naming the field, never a 500.
PostgreSQL or Redis unreachable -> 503 with Retry-After, so providers retry later.
"""
from __future__ import annotations

import asyncio
import json

import asyncpg
from aiohttp import web

from gateway.app.log import get_logger
from gateway.app.metrics import REJECTED
from gateway.domain.identity import AddressError
from gateway.domain.inputs import InputError
from gateway.infra.db import STORAGE_REFUSED

log = get_logger(__name__)

DB_UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                  asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                  asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError)


def json_error(status: int, code: str, message: str, **extra) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> web.Response:
        return json_error(self.status, self.code, self.message, **self.extra)


def reject(endpoint: str, reason: str, status: int, message: str, **extra) -> ApiError:
    """An ApiError for a refused webhook post, counted in gateway_rejected_total (endpoint, reason)."""
    REJECTED.labels(endpoint, reason).inc()
    return ApiError(status, reason, message, **extra)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        log.info("request rejected", path=request.path, status=exc.status, code=exc.code)
        return exc.response()
    except InputError as exc:
        log.info("request rejected", path=request.path, status=400, code=exc.code, field=exc.field)
        extra = {"field": exc.field} if exc.field else {}
        return json_error(400, exc.code, str(exc), **extra)
    except AddressError as exc:
        log.info("request rejected", path=request.path, status=400, code="invalid_address")
        return json_error(400, "invalid_address", str(exc))
    except STORAGE_REFUSED as exc:
        # Input a check should have caught (the database refused a value): the caller's fault, so
        # 400, but logged as a warning so the missing check gets written.
        log.warning("input refused by the database", path=request.path, error=type(exc).__name__)
        return json_error(400, "unstorable", "a value in the request cannot be stored")
    except web.HTTPRequestEntityTooLarge:
        log.info("request rejected", path=request.path, status=413, code="too_large")
        return json_error(413, "too_large", f"request body exceeds {request.client_max_size} bytes")
    except web.HTTPException:
        raise
    except DB_UNAVAILABLE as exc:
        log.warning("dependency unavailable", path=request.path, error=type(exc).__name__)
        resp = json_error(503, "unavailable", "storage is temporarily unavailable; retry later")
        resp.headers["Retry-After"] = "5"
        return resp
    except Exception as exc:  # a bug: log it, answer 500 without internals
        log.exception("unhandled error", path=request.path, error=str(exc))
        return json_error(500, "internal", "internal error")
