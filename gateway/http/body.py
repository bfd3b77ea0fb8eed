"""Reading a request's JSON body: the one strict decoder every JSON route uses."""
from __future__ import annotations

from aiohttp import web

from gateway.domain import inputs
from gateway.http.errors import ApiError


async def read_json(request: web.Request) -> dict:
    """The request's JSON object, decoded by the one strict decoder (gateway.domain.inputs.object_body):
    415 for another content type, 400 naming the field for anything we would not store."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    return inputs.object_body(await request.read())
