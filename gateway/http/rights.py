"""Open sockets keep re-checking their rights: every GATEWAY_RIGHTS_RECHECK_SECONDS (60 at most) and
at once when any process announces a change (`access.announce`, Redis pub/sub).

A socket registers a `Watcher` with this process's `RightsWatch`; the watcher's `recheck` decides
what a change means for it (close the socket, re-scope it). Announcements name an agent and/or
tokens; a watcher hears those that concern it, and every watcher hears an announcement that names
nothing, and the first tick after a lost pub/sub connection (it may have missed some).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import web

from gateway.app.log import get_logger
from gateway.http.keys import RUNTIME

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = get_logger(__name__)


@dataclass(eq=False)
class Watcher:
    """One socket: `recheck()` re-reads its rights and acts on them; `agent_id`/`token_id` select
    the announcements that concern it (None: only the periodic check, e.g. a chat visitor)."""
    recheck: Callable[[], Awaitable[None]]
    agent_id: int | None = None
    token_id: int | None = None
    name: str = field(default="socket")

    def concerned(self, event: dict) -> bool:
        if event.get("agent_id") is None and not event.get("token_ids"):
            return True
        return (self.agent_id is not None and event.get("agent_id") == self.agent_id) or \
            (self.token_id is not None and self.token_id in (event.get("token_ids") or ()))


class RightsWatch:
    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.interval = runtime.settings.rights_recheck_seconds
        self.watchers: set[Watcher] = set()

    def add(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)

    def discard(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    async def recheck(self, watchers) -> None:
        for watcher in list(watchers):
            if watcher not in self.watchers:
                continue
            try:
                await watcher.recheck()
            except Exception as exc:   # storage away: keep the socket, try again on the next tick
                log.warning("rights re-check failed", socket=watcher.name, error=str(exc))

    async def announced(self, event: dict) -> None:
        await self.recheck(w for w in list(self.watchers) if w.concerned(event))

    async def run_timer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                await self.recheck(list(self.watchers))

    async def run_listener(self, stop: asyncio.Event) -> None:
        channel = self.rt.keys.rights_channel()
        while not stop.is_set():
            pubsub = self.rt.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        await self.announced(_event(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # announcements may be lost meanwhile: re-check everyone
                log.warning("rights announcements unavailable; retrying", error=str(exc))
                await asyncio.sleep(1.0)
                await self.recheck(list(self.watchers))
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass


def _event(raw) -> dict:
    try:
        event = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


RIGHTS = web.AppKey("rights_watch", RightsWatch)


async def _rights_ctx(app: web.Application):
    stop = asyncio.Event()
    watch = app[RIGHTS]
    tasks = [asyncio.create_task(watch.run_timer(stop), name="rights-timer"),
             asyncio.create_task(watch.run_listener(stop), name="rights-listener")]
    yield
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def register(app: web.Application) -> None:
    app[RIGHTS] = RightsWatch(app[RUNTIME])
    app.cleanup_ctx.append(_rights_ctx)
