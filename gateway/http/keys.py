"""Typed application keys (aiohttp AppKey) for shared resources."""
from __future__ import annotations

from aiohttp import web

from gateway.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
