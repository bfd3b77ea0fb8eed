"""Small helpers every HTTP-speaking channel sender shares."""
from __future__ import annotations

from typing import Any

import aiohttp


async def json_object(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The response body as a JSON object; {} when it is not one (providers' error pages are HTML)."""
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return {}
    return body if isinstance(body, dict) else {}


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (the HTTP-date form is ignored: the outbox backs off anyway)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
