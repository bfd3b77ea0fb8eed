"""Bearer-token authentication and role checks for /api/v1."""
from __future__ import annotations

from aiohttp import web

from gateway import auth
from gateway.http.errors import ApiError
from gateway.http.keys import RUNTIME

PRINCIPAL = web.RequestKey("principal", auth.Principal)


async def principal(request: web.Request, *roles: str) -> auth.Principal:
    """The caller, who must hold one of `roles` (admin always may). 401 without a valid token."""
    cached = request.get(PRINCIPAL)
    if cached is None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        rt = request.app[RUNTIME]
        async with rt.pool.acquire(timeout=5) as conn:
            cached = await auth.authenticate(conn, token, admin_token=rt.settings.admin_token)
        if cached is None:
            raise ApiError(401, "unauthorized", "a valid bearer token is required")
        request[PRINCIPAL] = cached
    if roles and not cached.is_admin and cached.role not in roles:
        raise ApiError(403, "forbidden", f"this endpoint needs one of the roles: {', '.join(roles)}")
    return cached
