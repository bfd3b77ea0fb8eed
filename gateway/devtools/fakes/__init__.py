"""Fake provider servers speaking the real wire formats, for tests and `gateway bench`."""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass

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


@dataclass
class Misbehaviour:
    """Chances (0..1) that a send is answered badly, drawn per call from a seeded RNG (each fake maps
    throttle/server_error/unavailable to its provider's own error shape).

    drop: the connection closes before anything is stored; drop_after_accept: the message is
    accepted and then the connection closes (the sender cannot know: a retry without a look-up
    sends it twice).
    """

    throttle: float = 0.0          # the provider's rate-limit error, Retry-After: retry_after
    server_error: float = 0.0      # HTTP 500
    unavailable: float = 0.0       # HTTP 503 with Retry-After: retry_after
    hang: float = 0.0              # no answer for hang_seconds
    drop: float = 0.0
    drop_after_accept: float = 0.0
    slow: float = 0.0              # answered after slow_seconds
    retry_after: float = 1.0
    hang_seconds: float = 3600.0
    slow_seconds: float = 5.0
    seed: int | None = None

    def draw(self, rng: random.Random) -> str | None:
        x = rng.random()
        for name in ("throttle", "server_error", "unavailable", "hang", "drop", "drop_after_accept", "slow"):
            x -= getattr(self, name)
            if x < 0:
                return name
        return None


async def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (the client sees a disconnect)."""
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError()


class Misbehaving:
    """On-demand misbehaviour of a provider fake's send endpoint: a failure mix (`chaos`), latency
    on every answer, recipients that never get one (`hang_for`); `fates` records what each send got.
    Call `_init_misbehaving()` in `__init__` and `await self._fate(to)` first thing in the handler."""

    def _init_misbehaving(self) -> None:
        # what tests script and read back, the same in every fake provider
        self.requests: list = []                     # RecordedRequest of the provider's module
        self._failures: deque = deque()              # scripted answers (None: answer that call normally)
        self._delays: deque[float] = deque()
        self._recipient_rules: dict = {}             # recipient -> the failure every send to it gets
        self._media: dict = {}
        self.misbehaviour: Misbehaviour | None = None
        self._rng = random.Random()
        self.latency = 0.0                                  # seconds added to every send
        self._hang_for: set[str] = set()
        self.fates: list[tuple[float, str, str]] = []       # (time, recipient, what happened)

    def chaos(self, misbehaviour: Misbehaviour | None) -> None:
        """Answer sends per this mix from now on (None: behave)."""
        self.misbehaviour = misbehaviour
        self._rng = random.Random(misbehaviour.seed if misbehaviour else None)

    def hang_for(self, to: str) -> None:
        """Never answer sends to `to` (the sender's timeout must cut them)."""
        self._hang_for.add(to)

    async def _fate(self, to: str, delay: float = 0.0) -> str | None:
        """Draw this send's fate, record it, and wait as long as it says (latency, slow, hang)."""
        m = self.misbehaviour
        fate = m.draw(self._rng) if m else None
        if to in self._hang_for:
            fate = "hang"
        self.fates.append((time.time(), to, fate or "ok"))
        delay += self.latency
        if fate == "slow":
            delay += m.slow_seconds
        if fate == "hang":
            delay += m.hang_seconds if m else 3600.0
        if delay:
            await asyncio.sleep(delay)
        return fate

