"""Shared plumbing of the inbox routes: auth + scope + transaction, input parsing, JSON out."""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import asyncpg
from aiohttp import web

from gateway.domain import inputs, thread
from gateway.domain.auth import Principal
from gateway.http.access import principal
from gateway.http.body import read_json
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME
from gateway.http.openapi import BIGINT_MAX
from gateway.inbox import Conflict, Invalid, NotFound
from gateway.inbox.actions import Actor
from gateway.inbox.scope import Scope, scope_for

READ = ("agent", "readonly")        # admin is always allowed
ACT = ("agent",)
ADMIN: tuple[str, ...] = ("admin",)


def _default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(value) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


def respond(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


@dataclass
class Tx:
    conn: asyncpg.Connection
    scope: Scope
    principal: Principal
    actor: Actor
    effects: thread.Effects = field(default_factory=thread.Effects)


@contextlib.asynccontextmanager
async def transaction(request: web.Request, *roles: str):
    """Authenticate (401/403), open a transaction with the caller's scope, map inbox errors to
    HTTP (NotFound 404, Conflict 409, Invalid 422), and publish realtime effects after commit."""
    who = await principal(request, *roles)
    rt = request.app[RUNTIME]
    tx = None
    try:
        async with rt.pool.acquire(timeout=5) as conn, conn.transaction():
            tx = Tx(conn, await scope_for(conn, who), who, Actor.of(who))
            yield tx
    except NotFound:
        raise ApiError(404, "not_found", "no such resource") from None
    except Conflict as exc:
        raise ApiError(409, exc.code, exc.message, **exc.extra) from None
    except Invalid as exc:
        raise ApiError(422, exc.code, exc.message) from None
    if tx is not None and (tx.effects.events or tx.effects.wake_outbox):
        await rt.publish_effects(tx.effects)


# -- input --------------------------------------------------------------------------------------

def path_id(request: web.Request, name: str = "id") -> int:
    try:
        return inputs.digits_id(request.match_info[name], name)   # ASCII digits only, within 64 bits
    except inputs.InputError:
        raise ApiError(404, "not_found", "no such resource") from None


async def body(request: web.Request, *, optional: bool = False) -> dict:
    if optional and not request.body_exists:
        return {}
    return await read_json(request)


def bad(field_name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{field_name}: {message}", field=field_name)


def parse_time(field_name: str, raw) -> datetime:
    """ISO 8601 with an offset, in UTC (gateway.domain.inputs.timestamp: 400 naming the field)."""
    return inputs.timestamp(raw, field_name)


def text_field(data: dict, name: str, *, required: bool = True, max_len: int = 10_000,
               allow_empty: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise bad(name, "is required")
        return None
    if not isinstance(value, str) or len(value) > max_len or (not allow_empty and not value.strip()):
        raise bad(name, f"must be a non-empty string of at most {max_len} characters")
    return storable(name, value)


def storable(name: str, value):
    """PostgreSQL text and jsonb hold neither NUL characters nor lone surrogates: 400, not 500.
    (JSON bodies are already checked by read_json; this serves query strings and built values.)"""
    return inputs.check_tree(value, name)


def id_field(data: dict, name: str, *, required: bool = True, nullable: bool = False) -> int | None:
    value = data.get(name)
    if value is None:
        if required and not (nullable and name in data):
            raise bad(name, "is required")
        return None
    return inputs.int_id(value, name)


def int_field(data: dict, name: str, lo: int, hi: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad(name, f"must be an integer from {lo} to {hi}")
    return value


def q_int(request: web.Request, name: str, *, default: int | None = None, lo: int = 0,
          hi: int = BIGINT_MAX) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = inputs.digits_int(raw, name)
    if not lo <= value <= hi:
        raise bad(name, f"must be from {lo} to {hi}")
    return value


def q_choice(request: web.Request, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise bad(name, f"must be one of {', '.join(choices)}")
    return raw


def q_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "").lower()
    if raw in ("", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise bad(name, "must be true or false")


def q_text(request: web.Request, name: str, *, max_len: int = 200) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise bad(name, f"must be at most {max_len} characters")
    return storable(name, raw)
