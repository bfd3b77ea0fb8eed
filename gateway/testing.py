"""Helpers to run a gateway in-process on an ephemeral port (tests, benchmarks)."""
from __future__ import annotations

import asyncio
import contextlib
import os
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
async def running_gateway(settings: Settings, *, roles=("http", "worker"), port: int | None = None,
                          **runtime_kwargs):
    """Yields (runtime, base_url) with the HTTP app served on 127.0.0.1 (a free port by default)."""
    port = port or free_port()
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


async def wait_for(predicate, timeout=20.0, interval=0.05, message="condition not met in time"):
    """Poll an async predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(interval)


async def smtp_deliver(port: int, msg) -> None:
    """Send an email.message.EmailMessage to an SMTP server on 127.0.0.1 (smtplib, in a thread)."""
    import smtplib

    def send():
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(msg)
    await asyncio.to_thread(send)


def settings_env(s: Settings, **overrides) -> dict:
    """Environment for a `gateway` subprocess that uses the same database/redis/prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "TWILIO_", "WHATSAPP_"))}
    env.update({
        "GATEWAY_DATABASE_URL": s.database_url, "GATEWAY_REDIS_URL": s.redis_url,
        "GATEWAY_REDIS_PREFIX": s.redis_prefix, "GATEWAY_SECRET_KEY": s.secret_key,
        "GATEWAY_DATA_DIR": str(s.data_dir), "GATEWAY_DEFAULT_HANDLER": s.default_handler,
        "GATEWAY_RECLAIM_IDLE_MS": str(s.reclaim_idle_ms), "GATEWAY_SWEEPER_INTERVAL": str(s.sweeper_interval),
        "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_LOG_FORMAT": "json",
    })
    env.update({k: str(v) for k, v in overrides.items()})
    return env



class LocalServer:
    """An aiohttp app on 127.0.0.1 on a free port, as an async context manager (test doubles)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self):
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ApiChannelReceiver(LocalServer):
    """The business's end of the API channel: verifies our signature, can fail on purpose."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret
        self.received: list[dict] = []
        self.idempotency_keys: list[str | None] = []
        self.rejected = 0
        self.fail_next = 0
        self.fail_status = 503

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self.handle)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        import json

        from gateway.channels.api.webhook import SIGNATURE_HEADER, verify

        raw = await request.read()
        if not verify(self.secret, raw, request.headers.get(SIGNATURE_HEADER)):
            self.rejected += 1
            return web.Response(status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=self.fail_status, text="try later")
        self.received.append(json.loads(raw))
        self.idempotency_keys.append(request.headers.get("Idempotency-Key"))
        return web.json_response({"ok": True})
