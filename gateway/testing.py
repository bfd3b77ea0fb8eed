"""Helpers to run a gateway in-process on an ephemeral port (tests, benchmarks)."""
from __future__ import annotations

import contextlib
import socket

from aiohttp import web

from gateway.http.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, *, roles=("http", "worker"), **runtime_kwargs):
    """Yields (runtime, base_url) with the HTTP app served on 127.0.0.1."""
    port = settings.http_port if settings.http_port else free_port()
    settings = settings.with_(http_host="127.0.0.1", http_port=port,
                              public_url=settings.public_url or f"http://127.0.0.1:{port}")
    async with Runtime(settings, roles=roles, **runtime_kwargs) as runtime:
        runner = web.AppRunner(create_app(runtime), access_log=None, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield runtime, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
