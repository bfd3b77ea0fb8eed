"""Background passes: a step run now and then every `interval` seconds until the process stops.

The retention sweep, the rollups, the queue sweeper and auto-assignment each run this way: a failed
pass is logged at warning and the next one carries on where it stopped; a stop ends the wait at once.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def every(interval: float, stop: asyncio.Event, step: Callable[[], Awaitable],
                *, log, failed: str, errors: tuple[type[BaseException], ...] = (Exception,)) -> None:
    """Run `step()` until `stop` is set, waiting `interval` seconds after each pass. A pass that raises one of `errors` is logged on `log` as `failed` with the error."""
    while not stop.is_set():
        try:
            await step()
        except errors as exc:
            log.warning(failed, error=str(exc))
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            pass
