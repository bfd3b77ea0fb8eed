"""Small helpers every HTTP-speaking channel sender shares."""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.domain.types import SendOutcome, SendResult


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


def transport_failure(exc: BaseException, provider: str) -> SendResult:
    """A send that got no answer: RETRY; unknown outcome unless the connection was never made."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return SendResult(SendOutcome.RETRY, error_code="network", error_message=type(exc).__name__)
    if isinstance(exc, asyncio.TimeoutError):
        return SendResult(SendOutcome.RETRY, error_code="timeout", error_message=f"{provider} did not answer in time",
                          extra={"outcome_unknown": True})
    return SendResult(SendOutcome.RETRY, error_code="network", error_message=type(exc).__name__,
                      extra={"outcome_unknown": True})
