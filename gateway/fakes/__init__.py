"""Fake provider servers speaking the real wire formats, for tests and `gateway bench`."""
from __future__ import annotations

from aiohttp import web


class FakeServer:
    """Lifecycle shared by the fake provider servers: an aiohttp app on 127.0.0.1.

    Subclasses build their routes in `build_app`; `start(port=0)` picks a free port.
    """

    base_url = ""
    _runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, port: int = 0) -> str:
        # a short shutdown: scripted hangs must not hold a test's teardown
        self._runner = web.AppRunner(self.build_app(), shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
