"""Typed application keys (aiohttp AppKey) for shared resources."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

# The process's Runtime (pool, Redis, senders, ...), set by create_app; handlers read what they need.
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
