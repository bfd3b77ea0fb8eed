"""The OpenAPI document, built from the routes themselves.

A route module describes each handler with `@operation(...)` (summary, roles, request and
response schemas, query parameters); `GET /openapi.json` walks the app's router and renders what
it finds, so the document lists exactly the routes that exist. Routes registered by modules that
predate this (health, metrics) are described in `BUILTIN` below.

Conventions added to every operation: bearer auth with 401/403 when it has roles, 404 when its
path has parameters, 400/415 when it takes a body or query parameters, 503 when storage is down.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.domain.inputs import BIGINT_MAX

ID = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
TIME = {"type": "string", "format": "date-time"}
ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}


def nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def obj(required: list[str] | None = None, **properties) -> dict:
    out: dict = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


def array(items: dict, **kw) -> dict:
    return {"type": "array", "items": items, **kw}


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict
    description: str = ""
    required: bool = False
    where: str = "query"


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: dict[int, Any]                       # status -> JSON schema, or None (no JSON body)
    roles: tuple[str, ...] = ()                     # empty: no token needed
    request: dict | None = None                     # JSON body schema
    request_required: bool = True
    query: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    path_params: dict[str, dict] = field(default_factory=dict)   # default: ids (ID)
    tags: tuple[str, ...] = ()
    description: str = ""
    produces: str = "application/json"
    extra_responses: dict[int, str] = field(default_factory=dict)  # status -> description, no body


def operation(summary: str, *, responses: dict[int, Any], roles: tuple[str, ...] = (), **kw):
    """Attach an Operation to a handler; `GET /openapi.json` picks it up from the router."""
    op = Operation(summary=summary, responses=responses, roles=tuple(roles), **kw)

    def attach(handler):
        handler.__openapi__ = op
        return handler
    return attach


def describe(handler) -> Operation | None:
    return getattr(handler, "__openapi__", None)


BUILTIN: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation("Liveness", {200: obj(["status"], status={"type": "string"})}, tags=("ops",)),
    ("GET", "/readyz"): Operation(
        "Readiness: PostgreSQL and Redis reachable",
        {200: obj(["status", "checks"], status={"type": "string"}, checks={"type": "object"}),
         503: obj(["status", "checks"], status={"type": "string"}, checks={"type": "object"})}, tags=("ops",)),
    ("GET", "/metrics"): Operation("Prometheus metrics (bearer GATEWAY_METRICS_TOKEN when set)",
                                   {200: None, 401: ERROR}, tags=("ops",),
                                   produces="text/plain"),
}

_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _render(method: str, path: str, op: Operation) -> dict:
    out: dict = {"summary": op.summary, "operationId": _operation_id(method, path),
                 "tags": list(op.tags) or ["inbox"], "responses": {}}
    if op.description or op.roles:
        roles = ", ".join(("admin",) + tuple(r for r in op.roles if r != "admin"))
        out["description"] = (op.description + "\n\n" if op.description else "") + (
            f"Roles: {roles}." if op.roles else "")
    params = [{"name": n, "in": "path", "required": True, "schema": op.path_params.get(n, ID)}
              for n in _PATH_PARAM.findall(path)]
    params += [{"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
                **({"description": p.description} if p.description else {})} for p in op.query + op.headers]
    if params:
        out["parameters"] = params
    if op.request is not None:
        out["requestBody"] = {"required": op.request_required,
                              "content": {"application/json": {"schema": op.request}}}
    for status, schema in op.responses.items():
        if status == 204:
            out["responses"]["204"] = {"description": _reason(204)}
        elif schema is None:
            ctype = op.produces if status < 300 else "application/json"
            out["responses"][str(status)] = {"description": _reason(status),
                                             "content": {ctype: {"schema": {"type": "string"}}}}
        else:
            out["responses"][str(status)] = {"description": _reason(status),
                                             "content": {"application/json": {"schema": schema}}}
    for status, description in op.extra_responses.items():
        out["responses"][str(status)] = {"description": description}
    errors = []
    if op.roles:
        out["security"] = [{"bearer": []}]
        errors += [401, 403]
    if params or op.request is not None:
        errors.append(400)
    if op.request is not None:
        errors += [413, 415]
    if _PATH_PARAM.search(path):
        errors.append(404)
    if path.startswith("/api/"):
        errors.append(503)
    for status in errors:
        out["responses"].setdefault(str(status), {"description": _reason(status),
                                                  "content": {"application/json": {"schema": ERROR}}})
    return out


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path.removeprefix("/api/v1")).strip("/").replace("-", "_").replace("/", "_")
    return f"{method.lower()}_{words or 'root'}".replace(".", "_")


def build_document(app: web.Application) -> dict:
    paths: dict[str, dict] = {}
    for route in app.router.routes():
        method = route.method.upper()
        if method in ("HEAD", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        op = describe(route.handler) or BUILTIN.get((method, path))
        if op is None:
            continue
        paths.setdefault(path, {})[method.lower()] = _render(method, path, op)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Messaging gateway API", "version": "1",
                 "description": "Shared inbox, contacts, realtime feed and the API channel. "
                                "Authenticate with `Authorization: Bearer <token>`; a caller "
                                "without access to a conversation gets 404, never 403."},
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": ERROR}},
    }


def undocumented(app: web.Application) -> list[tuple[str, str]]:
    """Routes without a description (a test keeps this list empty for the API)."""
    out = []
    for route in app.router.routes():
        method = route.method.upper()
        if method in ("HEAD", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        if describe(route.handler) is None and (method, path) not in BUILTIN:
            out.append((method, path))
    return out


@operation("This OpenAPI document", responses={200: {"type": "object"}}, tags=("meta",))
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))


def register(app: web.Application) -> None:
    app.router.add_get("/openapi.json", get_openapi)
