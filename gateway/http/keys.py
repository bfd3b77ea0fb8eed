"""Typed application keys (aiohttp AppKey) for shared resources."""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

# The process's Runtime (pool, Redis, senders, ...), set by create_app; handlers read what they need.
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")

# Every open WebSocket (agents' stream, visitors' chat), closed with 1001 when the server shuts down.
WEBSOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("websockets", weakref.WeakSet)
